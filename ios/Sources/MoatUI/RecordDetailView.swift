import SwiftUI
import MoatKit

/// A record's page, drawn only from the core's detail model (the synced `layout_definition` for this
/// role): one section per layout section, one widget view per field, in the layout's order. Live.
struct RecordDetailView: View {
    @ObservedObject var store: MoatStore
    let objectType: String
    let id: String
    @State private var model: DetailViewModel?
    @State private var errors: [String: String] = [:]
    @State private var loadError: String?
    @State private var confirmDelete = false
    @Environment(\.dismiss) private var dismiss

    private var canDelete: Bool {
        store.objectTypes.first { $0.objectType == objectType }?.canDelete ?? false
    }

    var body: some View {
        Form {
            if let loadError { Text(loadError).foregroundStyle(.red) }
            if let model {
                ForEach(model.sections, id: \.id) { section in
                    Section(section.label) {
                        ForEach(section.fields, id: \.field) { field in
                            FieldWidget(store: store, objectType: objectType, field: field, error: errors[field.field]) { text, startedFrom in
                                await commit(field.field, text, startedFrom)
                            }
                        }
                    }
                }
                Section("History") {
                    let entries = store.history[RecordRef(objectType: objectType, id: id)] ?? []
                    if entries.isEmpty { Text("No changes recorded yet").foregroundStyle(.secondary) }
                    ForEach(Array(entries.enumerated()), id: \.offset) { _, e in
                        VStack(alignment: .leading, spacing: 2) {
                            Text("\(e.action) by \(e.who)").font(.subheadline)
                            if !e.labels.isEmpty { Text(e.labels.joined(separator: ", ")).font(.caption) }
                            Text(Date(timeIntervalSince1970: Double(e.atMs) / 1000).formatted())
                                .font(.caption2).foregroundStyle(.secondary)
                        }
                    }
                }
            }
        }
        .navigationTitle(model?.title ?? "")
        .toolbar {
            if canDelete {
                Button("Delete", role: .destructive) { confirmDelete = true }
            }
        }
        .confirmationDialog("Delete \(model?.title ?? "this record")?", isPresented: $confirmDelete, titleVisibility: .visible) {
            Button("Delete", role: .destructive) {
                Task {
                    do {
                        try await store.delete(objectType, id: id)
                        dismiss()
                    } catch let e as MoatError {
                        loadError = e.message
                    } catch {
                        loadError = error.localizedDescription
                    }
                }
            }
        } message: {
            Text("It is removed from this device now and from everyone's when it syncs.")
        }
        .task(id: store.revision) {
            await load()
            store.requestHistory(objectType, id: id)
        }
    }

    private func load() async {
        do {
            let m = try await store.detailView(objectType, id: id)
            // A newer load (the task restarted on a newer revision) wins over this one.
            if Task.isCancelled { return }
            model = m
            loadError = nil
        } catch let e as MoatError {
            loadError = e.message
        } catch {
            loadError = error.localizedDescription
        }
    }

    /// Hands the core what the user typed and what they started from; it reads and checks the text,
    /// and raises the conflict alert instead of writing over a change that arrived meanwhile.
    private func commit(_ field: String, _ text: String, _ startedFrom: FieldValue?) async {
        do {
            try await store.editText(objectType, id: id, field: field, text: text, startedFrom: startedFrom)
            errors[field] = nil
            await load()
        } catch let e as MoatError {
            errors[field] = e.message
        } catch {
            errors[field] = error.localizedDescription
        }
    }
}

/// A new record: the layout's fields with the metadata's defaults; nothing is written until "Create",
/// when the core reads and checks every field (as the server will) and makes the key on the device.
struct NewRecordView: View {
    @ObservedObject var store: MoatStore
    let objectType: String
    let created: (String) -> Void
    @State private var model: DetailViewModel?
    @State private var values: [String: String] = [:]
    @State private var error: String?
    @Environment(\.dismiss) private var dismiss

    var body: some View {
        NavigationStack {
            Form {
                if let model {
                    ForEach(model.sections, id: \.id) { section in
                        Section(section.label) {
                            ForEach(section.fields.filter { !$0.readOnly }, id: \.field) { f in
                                FieldWidget(store: store, objectType: objectType, field: typed(f), error: nil) { text, _ in
                                    values[f.field] = text
                                }
                            }
                        }
                    }
                }
                if let error { Text(error).foregroundStyle(.red) }
            }
            .navigationTitle(model?.title ?? "")
            .toolbar {
                ToolbarItem(placement: .cancellationAction) { Button("Cancel") { dismiss() } }
                ToolbarItem(placement: .confirmationAction) { Button("Create") { create() } }
            }
            .task {
                do {
                    let m = try await store.newRecord(objectType)
                    model = m
                    for f in m.sections.flatMap(\.fields) where !f.readOnly { values[f.field] = f.cell.editText }
                } catch let e as MoatError {
                    error = e.message
                } catch {
                    self.error = error.localizedDescription
                }
            }
        }
    }

    /// The field as the form holds it: what the user typed so far is its editing text.
    private func typed(_ f: FieldView) -> FieldView {
        var f = f
        f.cell.editText = values[f.field] ?? ""
        if let v = values[f.field], f.widget == .choice || f.widget == .date || f.widget == .boolean {
            f.cell.value = v.isEmpty ? .null : (f.widget == .boolean ? .integer(value: v == "1" ? 1 : 0) : .text(value: v))
        }
        return f
    }

    private func create() {
        let inputs = values.map { FieldInput(field: $0.key, text: $0.value) }
        Task {
            do {
                let id = try await store.create(objectType, inputs: inputs)
                dismiss()
                created(id)
            } catch let e as MoatError {
                error = e.message
            } catch {
                self.error = error.localizedDescription
            }
        }
    }
}
