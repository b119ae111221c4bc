import SwiftUI
import MoatKit

/// Demo sign-in: the server's seeded users (admin and technician of each company).
struct SignInView: View {
    let onSignIn: (Session) -> Void
    @AppStorage("moat.server") private var serverText = "http://127.0.0.1:8080"
    @State private var users: [DemoUser] = []
    @State private var error: String?
    @State private var loading = false

    var body: some View {
        NavigationStack {
            Form {
                Section("Server") {
                    TextField("http://host:port", text: $serverText)
                        .autocorrectionDisabled()
                        #if os(iOS)
                        .textContentType(.URL)
                        .keyboardType(.URL)
                        .textInputAutocapitalization(.never)
                        #endif
                    Button(loading ? "Loading…" : "Show demo users") { Task { await load() } }
                        .disabled(loading)
                }
                if let error { Section { Text(error).foregroundStyle(.red) } }
                ForEach(Dictionary(grouping: users, by: \.tenant).sorted(by: { $0.key < $1.key }), id: \.key) { tenant, people in
                    Section(tenant) {
                        ForEach(people) { u in
                            Button {
                                if let url = URL(string: serverText) { onSignIn(u.session(on: url)) }
                            } label: {
                                LabeledContent(u.name, value: u.role == "admin" ? "Office admin" : "Field technician")
                            }
                        }
                    }
                }
            }
            .navigationTitle("Moat")
            .task { await load() }
        }
    }

    private func load() async {
        guard let url = URL(string: serverText) else { error = "Not a URL"; return }
        loading = true
        defer { loading = false }
        do {
            users = try await DemoUser.fetch(from: url)
            error = nil
        } catch {
            self.error = "No demo users at \(serverText) (start it with `moat serve --demo`)."
        }
    }
}
