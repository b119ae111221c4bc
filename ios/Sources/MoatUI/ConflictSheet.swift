import SwiftUI
import MoatKit

/// The same field was changed here and on the server: show base, theirs and mine; the user decides.
struct ConflictSheet: View {
    @ObservedObject var store: MoatStore
    let conflict: ConflictView
    let remaining: Int
    @State private var editing: String?
    @State private var error: String?

    var body: some View {
        NavigationStack {
            Form {
                Section {
                    Text("\(conflict.objectLabel) \(conflict.title) changed on the server while you were editing it.")
                    if remaining > 0 { Text("\(remaining) more after this one").foregroundStyle(.secondary) }
                }
                ForEach(conflict.columns, id: \.column) { c in
                    Section(c.label) {
                        LabeledContent("Before", value: show(c.baseDisplay))
                        LabeledContent("Theirs", value: show(c.theirsDisplay))
                        LabeledContent("Mine", value: show(c.mineDisplay))
                    }
                }
                if let col = conflict.columns.first, let text = editing {
                    Section("Your value") {
                        TextField("Value", text: Binding(get: { text }, set: { editing = $0 }))
                        // The core reads the text as the field reads input (currency in major units).
                        Button("Save this value") { settle(.edit(column: col.column, text: text)) }
                    }
                }
                if let error { Text(error).foregroundStyle(.red) }
                Section {
                    Button("Keep mine") { settle(.keepMine) }.bold()
                    Button("Take theirs") { settle(.takeTheirs) }
                    if conflict.kind == .field, let col = conflict.columns.first {
                        Button("Edit…") { editing = col.mineEditText }
                    }
                }
            }
            .navigationTitle(conflict.kind == .field ? "Changed on both sides" : "Record changed")
        }
    }

    /// The core's display text (a choice's label, formatted currency); nil when the row is gone.
    private func show(_ text: String?) -> String {
        guard let text else { return "(deleted)" }
        return text.isEmpty ? "(empty)" : text
    }

    private func settle(_ choice: ConflictChoice) {
        Task {
            do {
                try await store.resolve(conflict, choice: choice)
            } catch let e as MoatError {
                error = e.message
            } catch {
                self.error = error.localizedDescription
            }
        }
    }
}

/// Writes the server refused, with its reasons, until dismissed.
struct RejectedListView: View {
    @ObservedObject var store: MoatStore
    @State private var items: [RejectedView] = []
    @Environment(\.dismiss) private var dismiss

    var body: some View {
        NavigationStack {
            List(items, id: \.mutationId) { r in
                VStack(alignment: .leading, spacing: 4) {
                    Text("\(r.objectLabel) \(r.title)").font(.headline)
                    Text(zip(r.labels, r.values).map { "\($0): \($1.isEmpty ? "(empty)" : $1)" }
                        .joined(separator: ", ") + " was not saved").font(.subheadline)
                    Text(r.reason).font(.footnote).foregroundStyle(.red)
                }
                .swipeActions {
                    Button("Try again") {
                        Task {
                            try? await store.retryRejected(r.mutationId)
                            items = (try? await store.rejected()) ?? []
                        }
                    }
                    Button("Discard") {
                        Task {
                            try? await store.dismissRejected(r.mutationId)
                            items = (try? await store.rejected()) ?? []
                        }
                    }
                }
            }
            .overlay { if items.isEmpty { Text("No refused changes").foregroundStyle(.secondary) } }
            .navigationTitle("Refused changes")
            .toolbar { Button("Done") { dismiss() } }
            .task(id: store.revision) { items = (try? await store.rejected()) ?? [] }
        }
    }
}

/// What this device changed and the server has not confirmed yet: what, when, which record.
struct PendingListView: View {
    @ObservedObject var store: MoatStore
    @State private var items: [PendingView] = []
    @Environment(\.dismiss) private var dismiss

    var body: some View {
        NavigationStack {
            List(items, id: \.mutationId) { p in
                VStack(alignment: .leading, spacing: 4) {
                    Text("\(p.action) \(p.objectLabel) \(p.title)").font(.headline)
                    if p.action == "Changed" {
                        Text(zip(p.labels, p.values).map { "\($0): \($1.isEmpty ? "(empty)" : $1)" }
                            .joined(separator: ", ")).font(.subheadline)
                    }
                    Text("Saved on this device \(Date(timeIntervalSince1970: Double(p.createdMs) / 1000).formatted(date: .omitted, time: .shortened)); sent when online")
                        .font(.footnote).foregroundStyle(.secondary)
                }
            }
            .overlay { if items.isEmpty { Text("Every change is on the server").foregroundStyle(.secondary) } }
            .navigationTitle("Waiting to sync")
            .toolbar { Button("Done") { dismiss() } }
            .task(id: store.revision) { items = (try? await store.pending()) ?? [] }
        }
    }
}
