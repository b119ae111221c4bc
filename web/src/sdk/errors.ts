/** An error from the core: `Invalid` (the input; shown to the user), `NotFound`, `Storage`. */
export class MoatError extends Error {
  constructor(
    readonly kind: "Invalid" | "NotFound" | "Storage" | "Closed",
    message: string,
  ) {
    super(message);
    this.name = kind;
  }
}
