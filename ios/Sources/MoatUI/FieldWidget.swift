import SwiftUI
import MoatKit

/// Chooses the view for a layout widget. No field or object type is known here: only widget kinds.
/// Every control hands back text (what the user typed, a choice's value, `YYYY-MM-DD`, `1`/`0`) and the
/// value the user started from; the core reads the text as the field reads input (currency in major
/// units with the field's scale), and raises the conflict alert instead of writing when the value
/// changed under the user meanwhile.
struct FieldWidget: View {
    let field: FieldView
    let error: String?
    let commit: (String, FieldValue?) async -> Void

    var body: some View {
        VStack(alignment: .leading, spacing: 4) {
            if field.readOnly {
                ReadOnlyField(field: field)
            } else {
                switch field.widget {
                case .choice: ChoiceField(field: field, commit: commit)
                case .multiline: TextField_(field: field, axis: .vertical, commit: commit)
                case .date: DateField(field: field, commit: commit)
                case .boolean: BooleanField(field: field, commit: commit)
                case .number, .currency: TextField_(field: field, axis: .horizontal, keyboardNumeric: true, commit: commit)
                case .reference, .lineItems, .unknown: ReadOnlyField(field: field)
                case .text: TextField_(field: field, axis: .horizontal, commit: commit)
                }
            }
            if let error { Text(error).font(.caption).foregroundStyle(.red) }
        }
    }
}

struct ReadOnlyField: View {
    let field: FieldView
    var body: some View {
        LabeledContent(field.label) {
            Text(field.cell.display.isEmpty ? "—" : field.cell.display)
                .foregroundStyle(.secondary)
                .multilineTextAlignment(.trailing)
        }
    }
}

/// Text, multiline, number and currency: commits when editing ends.
struct TextField_: View {
    let field: FieldView
    let axis: Axis
    var keyboardNumeric = false
    let commit: (String, FieldValue?) async -> Void
    @State private var text = ""
    /// The value when the user began typing (a live change may replace the field's value meanwhile).
    @State private var startedFrom: FieldValue?
    @FocusState private var focused: Bool

    var body: some View {
        LabeledContent {
            TextField(field.label, text: $text, axis: axis)
                .multilineTextAlignment(axis == .vertical ? .leading : .trailing)
                .focused($focused)
                .onSubmit { send() }
                .onChange(of: focused) { _, now in
                    if now { startedFrom = field.cell.value } else { send() }
                }
                #if os(iOS)
                .keyboardType(keyboardNumeric ? .decimalPad : .default)
                #endif
        } label: {
            Text(field.required ? "\(field.label) *" : field.label)
        }
        .onAppear { text = field.cell.editText }
        .onChange(of: field.cell.editText) { _, t in if !focused { text = t } }
    }

    private func send() {
        guard text != field.cell.editText else { return }
        let (typed, base) = (text, startedFrom ?? field.cell.value)
        Task { await commit(typed, base) }
    }
}

struct ChoiceField: View {
    let field: FieldView
    let commit: (String, FieldValue?) async -> Void

    var body: some View {
        Picker(field.label, selection: Binding(
            get: { if case .text(let v) = field.cell.value { return v } else { return "" } },
            set: { v in Task { await commit(v, field.cell.value) } }
        )) {
            if !field.required { Text("—").tag("") }
            ForEach(field.options, id: \.value) { o in
                Text(o.label).tag(o.value)
            }
        }
    }
}

/// Dates are stored as `YYYY-MM-DD` text.
struct DateField: View {
    let field: FieldView
    let commit: (String, FieldValue?) async -> Void
    private static let format: DateFormatter = {
        let f = DateFormatter()
        f.calendar = Calendar(identifier: .gregorian)
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd"
        return f
    }()

    var body: some View {
        DatePicker(field.label, selection: Binding(
            get: {
                if case .text(let v) = field.cell.value, let d = Self.format.date(from: v) { return d }
                return Date()
            },
            set: { d in Task { await commit(Self.format.string(from: d), field.cell.value) } }
        ), displayedComponents: .date)
    }
}

struct BooleanField: View {
    let field: FieldView
    let commit: (String, FieldValue?) async -> Void

    var body: some View {
        Toggle(field.label, isOn: Binding(
            get: { field.cell.value == .integer(value: 1) },
            set: { on in Task { await commit(on ? "1" : "0", field.cell.value) } }
        ))
    }
}
