// Values are read and formatted by the core, the same code the native client runs: a currency
// field's scale comes from the synced metadata; what the user types goes to the core as text. A scale
// of 0 and of 3 round-trip through an edit in the browser and land on the server as minor units.
import { test, expect, signIn, openRecord, serverQuery, setPriceScale, type Server } from "./fixtures";

const JOB = "job-a-00077";


function storedPrice(server: Server): number {
  const [[cents]] = serverQuery(server, "SELECT price_cents FROM jobs WHERE id = ?", JOB) as [[number]];
  return cents;
}

test("a currency field's scale round-trips through an edit in the browser", async ({ page, server }) => {
  await signIn(page, server, "alice");
  await openRecord(page, server, "jobs", JOB);
  const input = page.getByTestId("field-price_cents-input");
  const error = page.getByTestId("field-price_cents-error");

  for (const [scale, typed, stored, shown] of [
    [0, "250", 250, "250"],
    [3, "2.5", 2500, "2.500"],
    [2, "$1,234.5", 123450, "1234.50"],
  ] as const) {
    await setPriceScale(page, server, scale);
    await expect(page.getByTestId("status-pending")).toHaveAttribute("data-count", "0");
    await input.fill(typed);
    await input.blur();
    await expect(error).toHaveCount(0);
    await expect(input).toHaveValue(shown);
    await expect.poll(() => storedPrice(server)).toBe(stored);
  }

  // Input the field cannot hold is refused with its reason, never rounded.
  await setPriceScale(page, server, 3);
  await expect(page.getByTestId("status-pending")).toHaveAttribute("data-count", "0");
  await input.fill("1.2345");
  await input.blur();
  await expect(error).toHaveText("Price: at most 3 decimal places");
  expect(storedPrice(server)).toBe(123450);
});

test("a stored value the metadata no longer allows is shown, marked with the rule it breaks", async ({ page, server }) => {
  await signIn(page, server, "alice");
  await openRecord(page, server, "jobs", JOB);
  const [[held]] = serverQuery(server, "SELECT status FROM jobs WHERE id = ?", JOB) as [[string]];
  const [[text]] = serverQuery(server, "SELECT fields FROM object_metadata WHERE id = 'company-a:jobs'") as [[string]];
  type Field = { name: string; options?: { value: string; label: string }[] };
  const fields = (JSON.parse(text) as Field[]).map((f) =>
    f.name === "status" ? { ...f, options: f.options!.filter((o) => o.value !== held) } : f,
  );
  await page.evaluate(
    (v) => window.moat!.updateRow("object_metadata", "company-a:jobs", "fields", { type: "text", value: v }),
    JSON.stringify(fields),
  );
  const error = page.getByTestId("field-status-error");
  await expect(error).toHaveText(`Status: "${held}" is not one of the choices`);
  await expect(page.getByTestId("field-status")).toHaveClass(/invalid/);
  // Choosing an allowed value clears it.
  const allowed = fields.find((f) => f.name === "status")!.options![0]!.value;
  await page.getByTestId("field-status-input").selectOption(allowed);
  await expect(error).toHaveCount(0);
});
