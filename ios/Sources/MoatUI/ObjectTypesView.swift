import SwiftUI
import MoatKit

/// The object types, only from the synced `object_metadata`.
struct ObjectTypesView: View {
    @ObservedObject var store: MoatStore

    var body: some View {
        List(store.objectTypes, id: \.objectType) { t in
            NavigationLink {
                RecordListView(store: store, objectType: t.objectType)
            } label: {
                HStack {
                    Image(systemName: symbol(for: t.icon))
                        .foregroundStyle(.tint)
                        .frame(width: 28)
                    Text(t.labelPlural)
                    Spacer()
                    Text(t.count, format: .number).foregroundStyle(.secondary)
                }
            }
        }
        .overlay {
            if store.objectTypes.isEmpty {
                ProgressView("Waiting for the first sync…")
            }
        }
    }

    /// The metadata names an icon; SF Symbols has most of them, a square stands in for the rest.
    private func symbol(for icon: String?) -> String {
        switch icon {
        case "wrench": return "wrench.and.screwdriver"
        case "box", "package": return "shippingbox"
        case "users": return "person.2"
        case "user": return "person"
        case "truck": return "truck.box"
        case "car": return "car"
        default: return "square.grid.2x2"
        }
    }
}
