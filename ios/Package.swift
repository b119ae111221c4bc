// swift-tools-version:5.9
// Moat's iOS client. MoatKit wraps the uniffi bindings of `client-bridge` (the Rust core) in Swift
// models; MoatUI draws the core's view models in SwiftUI; MoatApp is the app. The Rust library comes
// as `build/client_bridgeFFI.xcframework`, made by `build-xcframework.sh` on a Mac (see README.md).
import PackageDescription

let package = Package(
    name: "Moat",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [
        .library(name: "MoatKit", targets: ["MoatKit"]),
        .library(name: "MoatUI", targets: ["MoatUI"]),
        .executable(name: "MoatApp", targets: ["MoatApp"]),
    ],
    targets: [
        .binaryTarget(name: "client_bridgeFFI", path: "build/client_bridgeFFI.xcframework"),
        .target(name: "MoatKit", dependencies: ["client_bridgeFFI"]),
        .target(name: "MoatUI", dependencies: ["MoatKit"]),
        .executableTarget(name: "MoatApp", dependencies: ["MoatUI"]),
    ]
)
