import SwiftUI
import MoatKit

/// The app's root: sign-in until a session exists, then the signed-in workspace.
public struct RootView: View {
    @State private var session: Session? = Session.load()
    @State private var store: MoatStore?
    @State private var openError: String?

    public init() {}

    public var body: some View {
        Group {
            if let store {
                WorkspaceView(store: store, onSignOut: signOut)
            } else if let openError {
                ContentUnavailableView("Cannot open the local database", systemImage: "externaldrive.badge.xmark",
                                       description: Text(openError))
            } else {
                SignInView { s in
                    Session.save(s)
                    session = s
                    open(s)
                }
            }
        }
        .onAppear { if let session, store == nil { open(session) } }
    }

    private func open(_ s: Session) {
        do {
            store = try MoatStore(session: s)
        } catch let e as MoatError {
            openError = e.message
        } catch {
            openError = error.localizedDescription
        }
    }

    /// Signs out at once; the client closes in the background (never on the main thread).
    private func signOut() {
        Session.save(nil)
        let closing = store
        store = nil
        session = nil
        Task { await closing?.close() }
    }
}

/// Object types → records → a record, with the sync status always on screen and the conflict alert
/// over everything.
struct WorkspaceView: View {
    @ObservedObject var store: MoatStore
    let onSignOut: () -> Void
    @State private var showRejected = false
    @State private var showPending = false

    var body: some View {
        NavigationStack {
            ObjectTypesView(store: store)
                .navigationTitle(store.session.tenant)
                .toolbar {
                    ToolbarItem(placement: .primaryAction) {
                        Menu {
                            Text("\(store.session.name) · \(store.session.role)")
                            // The user's own switch: what they chose, whatever the network does.
                            let held = store.status?.heldOffline ?? false
                            Button(held ? "Go online" : "Work offline") { store.setOnline(held) }
                            if store.status?.phase == .offline && !held {
                                Button("Try now") { store.setOnline(true) }
                            }
                            Button("Changes waiting to sync") { showPending = true }
                            Button("Refused changes") { showRejected = true }
                            Button("Sign out", role: .destructive, action: onSignOut)
                        } label: {
                            Image(systemName: "person.crop.circle")
                        }
                    }
                }
                .safeAreaInset(edge: .bottom) {
                    StatusBarView(status: store.status, error: store.syncError, rejection: store.lastRejection) { showRejected = true }
                }
        }
        .sheet(isPresented: $showRejected) { RejectedListView(store: store) }
        .sheet(isPresented: $showPending) { PendingListView(store: store) }
        .sheet(item: Binding(get: { store.conflicts.first }, set: { _ in })) { conflict in
            ConflictSheet(store: store, conflict: conflict, remaining: store.conflicts.count - 1)
                .interactiveDismissDisabled()
        }
    }
}

extension ConflictView: Identifiable {}
