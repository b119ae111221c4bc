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

    var body: some View {
        Form {
            if let loadError { Text(loadError).foregroundStyle(.red) }
            if let model {
                ForEach(model.sections, id: \.id) { section in
                    Section(section.label) {
                        ForEach(section.fields, id: \.field) { field in
                            FieldWidget(field: field, error: errors[field.field]) { text, startedFrom in
                                await commit(field.field, text, startedFrom)
                            }
                        }
                    }
                }
            }
        }
        .navigationTitle(model?.title ?? "")
        .task(id: store.revision) { await load() }
    }

    private func load() async {
        do {
            model = try await store.detailView(objectType, id: id)
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
