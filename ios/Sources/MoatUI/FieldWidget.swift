import SwiftUI
import MoatKit

/// Chooses the view for a layout widget. No field or object type is known here: only widget kinds.
/// Every control hands back text (what the user typed, a choice's value, `YYYY-MM-DD`, `1`/`0`) and the
/// value the user started from; the core reads the text as the field reads input (currency in major
/// units with the field's scale), and raises the conflict alert instead of writing when the value
/// changed under the user meanwhile.
struct FieldWidget: View {
    @ObservedObject var store: MoatStore
    let objectType: String
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
                case .reference: ReferenceField(store: store, objectType: objectType, field: field, commit: commit)
                case .lineItems: LineItemsEditor(store: store, objectType: objectType, field: field, commit: commit)
                case .unknown: ReadOnlyField(field: field)
                case .text: TextField_(field: field, axis: .horizontal, commit: commit)
                }
            }
            if field.pending {
                Label("Not synced yet", systemImage: "icloud.slash").font(.caption2).foregroundStyle(.orange)
            }
            if let error { Text(error).font(.caption).foregroundStyle(.red) }
            else if let problem = field.problem { Text(problem).font(.caption).foregroundStyle(.red) }
        }
    }
}

struct ReadOnlyField: View {
    let field: FieldView
    var body: some View {
        if let items = field.lineItems {
            LineItemsTable(label: field.label, items: items)
        } else {
            LabeledContent(field.label) {
                Text(field.cell.display.isEmpty ? "—" : field.cell.display)
                    .foregroundStyle(.secondary)
                    .multilineTextAlignment(.trailing)
            }
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
                // Return ends editing; losing focus is the one place an edit is sent (sending on submit
                // too sent it twice).
                .onSubmit { focused = false }
                .onChange(of: focused) { _, now in
                    if now { startedFrom = field.cell.value } else { send() }
                }
                #if os(iOS)
                .keyboardType(keyboardNumeric ? .decimalPad : .default)
                #endif
        } label: {
            VStack(alignment: .leading, spacing: 2) {
                Text(field.required ? "\(field.label) *" : field.label)
                // Someone else's saved value arrived while the user types: say so before they save.
                if focused, let startedFrom, startedFrom != field.cell.value {
                    Text("Changed meanwhile to “\(field.cell.display)”; saving asks which to keep")
                        .font(.caption2).foregroundStyle(.orange)
                }
            }
        }
        .onAppear { text = field.cell.editText }
        .onChange(of: field.cell.editText) { _, t in if !focused { text = t } }
    }

    private func send() {
        guard text != field.cell.editText else { return }
        let (typed, base) = (text, startedFrom ?? field.cell.value)
        startedFrom = nil
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

/// Dates are stored as `YYYY-MM-DD` text. An empty date stays empty ("Set date" starts one) and an
/// optional one can be cleared.
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

    private var stored: Date? {
        if case .text(let v) = field.cell.value { return Self.format.date(from: v) }
        return nil
    }

    var body: some View {
        if let stored {
            HStack {
                DatePicker(field.label, selection: Binding(
                    get: { stored },
                    set: { d in Task { await commit(Self.format.string(from: d), field.cell.value) } }
                ), displayedComponents: .date)
                if !field.required {
                    Button("Clear") { Task { await commit("", field.cell.value) } }
                        .buttonStyle(.borderless)
                }
            }
        } else {
            LabeledContent(field.label) {
                Button("Set date") { Task { await commit(Self.format.string(from: Date()), field.cell.value) } }
            }
        }
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

/// A reference: the record's title, opening a picker that searches the referenced object type on
/// the device (the core's `referenceOptions`).
struct ReferenceField: View {
    @ObservedObject var store: MoatStore
    let objectType: String
    let field: FieldView
    let commit: (String, FieldValue?) async -> Void

    var body: some View {
        NavigationLink {
            ReferencePicker(store: store, objectType: objectType, field: field) { id in
                Task { await commit(id, field.cell.value) }
            }
        } label: {
            LabeledContent(field.required ? "\(field.label) *" : field.label,
                           value: field.cell.display.isEmpty ? "Choose…" : field.cell.display)
        }
    }
}

struct ReferencePicker: View {
    @ObservedObject var store: MoatStore
    let objectType: String
    let field: FieldView
    let pick: (String) -> Void
    @State private var search = ""
    @State private var options: [ReferenceOption] = []
    @Environment(\.dismiss) private var dismiss

    var body: some View {
        List(options, id: \.id) { o in
            Button {
                pick(o.id)
                dismiss()
            } label: {
                VStack(alignment: .leading) {
                    Text(o.title)
                    if !o.detail.isEmpty { Text(o.detail).font(.caption).foregroundStyle(.secondary) }
                }
            }
        }
        .navigationTitle(field.label)
        .searchable(text: $search)
        .task(id: search) {
            let found = (try? await store.referenceOptions(objectType, field: field.field, search: search)) ?? []
            if !Task.isCancelled { options = found }
        }
    }
}

/// Line items with each item's amount and the total (the core computes both, in the field's currency).
struct LineItemsTable: View {
    let label: String
    let items: LineItemsView

    var body: some View {
        VStack(alignment: .leading, spacing: 6) {
            Text(label).font(.subheadline).bold()
            ForEach(Array(items.rows.enumerated()), id: \.offset) { _, row in
                HStack {
                    Text(zip(items.columns, row.cells).map { "\($0.label) \($1.display)" }.joined(separator: " · "))
                        .font(.caption)
                    Spacer()
                    if let amount = row.amount { Text(amount).font(.caption).monospacedDigit() }
                }
            }
            if let total = items.total {
                HStack { Text("Total").bold(); Spacer(); Text(total).bold().monospacedDigit() }
            }
        }
    }
}

/// Editable line items: one text field per item column; saved when "Save items" is tapped (the core
/// reads every cell, a unit price in major units, and names the item and column of a mistake).
struct LineItemsEditor: View {
    @ObservedObject var store: MoatStore
    let objectType: String
    let field: FieldView
    let commit: (String, FieldValue?) async -> Void
    @State private var rows: [[String]] = []
    @State private var error: String?

    var body: some View {
        if let items = field.lineItems {
            VStack(alignment: .leading, spacing: 6) {
                LineItemsTable(label: field.label, items: items)
                ForEach(rows.indices, id: \.self) { r in
                    HStack {
                        ForEach(items.columns.indices, id: \.self) { c in
                            TextField(items.columns[c].label, text: Binding(
                                get: { r < rows.count && c < rows[r].count ? rows[r][c] : "" },
                                set: { if r < rows.count && c < rows[r].count { rows[r][c] = $0 } }
                            ))
                        }
                        Button(role: .destructive) { rows.remove(at: r) } label: { Image(systemName: "minus.circle") }
                            .buttonStyle(.borderless)
                    }
                }
                HStack {
                    Button("Add item") { rows.append(items.columns.map { _ in "" }) }
                    Spacer()
                    Button("Save items") { save() }
                }
                .buttonStyle(.borderless)
                if let error { Text(error).font(.caption).foregroundStyle(.red) }
            }
            .onAppear { rows = items.rows.map { $0.cells.map(\.editText) } }
            .onChange(of: items) { _, now in rows = now.rows.map { $0.cells.map(\.editText) } }
        }
    }

    private func save() {
        let typed = rows
        Task {
            do {
                let json = try await store.lineItemsText(objectType, field: field.field, rows: typed)
                error = nil
                await commit(json, field.cell.value)
            } catch let e as MoatError {
                error = e.message
            } catch {
                self.error = error.localizedDescription
            }
        }
    }
}
