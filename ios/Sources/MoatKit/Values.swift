import Foundation

extension FieldValue {
    /// The value as an editor shows it (currency in major units, e.g. 12.50).
    public func editingText(widget: String) -> String {
        switch self {
        case .null: return ""
        case .integer(let v) where widget == "currency": return String(format: "%.2f", Double(v) / 100)
        case .integer(let v): return String(v)
        case .real(let v): return String(v)
        case .text(let v): return v
        }
    }

    /// What an editor holds, as the value the field stores; nil when it is not a number.
    public static func parse(_ text: String, widget: String) -> FieldValue? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t.isEmpty { return .null }
        switch widget {
        case "number":
            if let i = Int64(t) { return .integer(value: i) }
            return Double(t).map { .real(value: $0) }
        case "currency":
            return Double(t.replacingOccurrences(of: ",", with: "")).map { .integer(value: Int64(($0 * 100).rounded())) }
        case "boolean":
            return .integer(value: (t == "true" || t == "1") ? 1 : 0)
        default:
            return .text(value: text)
        }
    }
}

extension MoatError {
    /// The words to show the user.
    public var message: String {
        switch self {
        case .Invalid(let m), .NotFound(let m), .Storage(let m): return m
        }
    }
}
