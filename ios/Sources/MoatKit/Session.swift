import Foundation

/// Who is signed in, to which server. Kept in UserDefaults so that the app reopens the same database
/// (and works offline) after a restart; a production app keeps the token in the Keychain.
public struct Session: Codable, Equatable, Sendable {
    public var server: URL
    public var user: String
    public var name: String
    public var tenant: String
    public var role: String
    public var token: String

    public init(server: URL, user: String, name: String, tenant: String, role: String, token: String) {
        self.server = server
        self.user = user
        self.name = name
        self.tenant = tenant
        self.role = role
        self.token = token
    }

    /// `ws://host:port/sync` for an `http://host:port` server (`wss` for `https`).
    public var syncURL: String {
        var c = URLComponents(url: server, resolvingAgainstBaseURL: false) ?? URLComponents()
        c.scheme = c.scheme == "https" ? "wss" : "ws"
        c.path = "/sync"
        return c.string ?? "ws://127.0.0.1:8080/sync"
    }

    /// One database per user, tenant and role: a replica follows one channel.
    public var databaseName: String {
        let raw = "moat-\(tenant)-\(role)-\(user).db"
        return String(raw.map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "_" })
    }

    private static let key = "moat.session"

    public static func load() -> Session? {
        guard let data = UserDefaults.standard.data(forKey: key) else { return nil }
        return try? JSONDecoder().decode(Session.self, from: data)
    }

    public static func save(_ s: Session?) {
        if let s, let data = try? JSONEncoder().encode(s) {
            UserDefaults.standard.set(data, forKey: key)
        } else {
            UserDefaults.standard.removeObject(forKey: key)
        }
    }
}

/// A seeded user offered by a server started with `moat serve --demo` (`GET /demo/users`).
public struct DemoUser: Codable, Identifiable, Sendable {
    public var user: String
    public var name: String
    public var tenant: String
    public var role: String
    public var token: String
    public var id: String { user }

    /// The demo users of `server`.
    public static func fetch(from server: URL) async throws -> [DemoUser] {
        let (data, response) = try await URLSession.shared.data(from: server.appendingPathComponent("demo/users"))
        guard (response as? HTTPURLResponse)?.statusCode == 200 else { throw URLError(.badServerResponse) }
        return try JSONDecoder().decode([DemoUser].self, from: data)
    }

    public func session(on server: URL) -> Session {
        Session(server: server, user: user, name: name, tenant: tenant, role: role, token: token)
    }
}
