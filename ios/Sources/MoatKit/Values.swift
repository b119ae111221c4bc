import Foundation

// Values are read and formatted by the core, once for every client: a field's `cell.editText` is what
// an editor starts from, and `MoatStore.editText` hands back what the user typed (the core reads it
// as the field reads input, currency with the field's scale). Nothing is parsed in Swift.

extension MoatError {
    /// The words to show the user.
    public var message: String {
        switch self {
        case .Invalid(let m), .NotFound(let m), .Storage(let m): return m
        }
    }
}
