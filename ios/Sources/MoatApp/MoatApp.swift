import SwiftUI
import MoatUI

/// The app: everything it shows comes from MoatUI's views over the core's view models.
@main
struct MoatApp: App {
    var body: some Scene {
        WindowGroup {
            RootView()
        }
    }
}
