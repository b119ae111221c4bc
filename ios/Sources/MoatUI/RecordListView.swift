import SwiftUI
import MoatKit

/// A list of records with the columns the metadata names; live, searchable, paged. "Assigned to me"
/// and a filter per choice column (with counts) come from the core's list model, as on the web.
struct RecordListView: View {
    @ObservedObject var store: MoatStore
    let objectType: String
    @State private var model: ListViewModel?
    @State private var search = ""
    @State private var limit: Int64 = 50
    @State private var mine = false
    @State private var filter: [String: String] = [:]
    @State private var error: String?
    @State private var creating = false
    @State private var opened: String?

    private var type: ObjectTypeView? { store.objectTypes.first { $0.objectType == objectType } }

    var body: some View {
        List {
            if let model {
                if model.mineCount != nil || !model.facets.isEmpty {
                    Section {
                        if let count = model.mineCount {
                            Picker("View", selection: $mine) {
                                Text("All (\(model.allCount))").tag(false)
                                Text("Assigned to me (\(count))").tag(true)
                            }
                            .pickerStyle(.segmented)
                        }
                        ForEach(model.facets, id: \.field) { facet in
                            Picker(facet.label, selection: Binding(
                                get: { filter[facet.field] ?? "" },
                                set: { filter[facet.field] = $0 }
                            )) {
                                Text("Any").tag("")
                                ForEach(facet.options, id: \.value) { o in Text("\(o.label) (\(o.count))").tag(o.value) }
                            }
                        }
                    }
                }
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
        .toolbar {
            if type?.canCreate == true {
                Button { creating = true } label: { Label("New \(type?.label ?? "")", systemImage: "plus") }
            }
        }
        .sheet(isPresented: $creating) {
            NewRecordView(store: store, objectType: objectType) { id in opened = id }
        }
        .navigationDestination(item: $opened) { id in RecordDetailView(store: store, objectType: objectType, id: id) }
        .task(id: LoadKey(revision: store.revision, search: search, limit: limit, mine: mine, filter: filter)) { await load() }
    }

    private struct LoadKey: Equatable {
        let revision: Int
        let search: String
        let limit: Int64
        let mine: Bool
        let filter: [String: String]
    }

    private func load() async {
        let filters = filter.filter { !$0.value.isEmpty }.map { ListFilter(field: $0.key, equals: $0.value, min: nil, max: nil) }
        let q = ListQuery(objectType: objectType, search: search.isEmpty ? nil : search, sortField: nil, ascending: nil,
                          offset: nil, limit: limit, mine: mine, filters: filters)
        do {
            let m = try await store.query(q)
            // The task restarts when the query changes: an older answer must not replace a newer one.
            if Task.isCancelled { return }
            model = m
            error = nil
        } catch let e as MoatError {
            error = e.message
        } catch {
            self.error = error.localizedDescription
        }
    }
}

