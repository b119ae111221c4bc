import SwiftUI
import MoatKit

/// A list of records with the columns the metadata names; live, searchable, paged.
struct RecordListView: View {
    @ObservedObject var store: MoatStore
    let objectType: String
    @State private var model: ListViewModel?
    @State private var search = ""
    @State private var limit: Int64 = 50
    @State private var error: String?

    var body: some View {
        List {
            if let model {
                ForEach(model.rows, id: \.id) { row in
                    NavigationLink {
                        RecordDetailView(store: store, objectType: objectType, id: row.id)
                    } label: {
                        VStack(alignment: .leading, spacing: 4) {
                            Text(row.title).font(.headline)
                            HStack(spacing: 10) {
                                // The first column is the title; the rest are the metadata's other columns.
                                ForEach(Array(zip(model.columns, row.cells).dropFirst()), id: \.0.field) { column, cell in
                                    Text(cell.display)
                                        .font(.caption)
                                        .foregroundStyle(.secondary)
                                        .accessibilityLabel("\(column.label): \(cell.display)")
                                }
                            }
                        }
                    }
                }
                if Int64(model.rows.count) < model.total {
                    Button("Show more (\(model.total - Int64(model.rows.count)) left)") { limit += 50 }
                }
            }
            if let error { Text(error).foregroundStyle(.red) }
        }
        .navigationTitle(model?.title ?? "")
        .searchable(text: $search)
        .task(id: LoadKey(revision: store.revision, search: search, limit: limit)) { await load() }
    }

    private struct LoadKey: Equatable {
        let revision: Int
        let search: String
        let limit: Int64
    }

    private func load() async {
        do {
            model = try await store.listView(objectType, search: search.isEmpty ? nil : search, limit: limit)
            error = nil
        } catch let e as MoatError {
            error = e.message
        } catch {
            self.error = error.localizedDescription
        }
    }
}
