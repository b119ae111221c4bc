#!/usr/bin/env bash
# macOS only (Xcode's xcodebuild and lipo, Apple's SDKs): builds client-bridge as a static library for
# iOS devices, the iOS simulator (Apple silicon and Intel) and macOS, and packs them with the
# committed C header into ios/build/client_bridgeFFI.xcframework, which Package.swift names.
# The Swift bindings are not regenerated here: they are committed (scripts/swift-bindings) and the
# Linux test run fails when they are stale, so what ships is what was checked.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -s)" != "Darwin" ]; then
    echo "build-xcframework.sh needs macOS with Xcode (xcodebuild, lipo, the iOS SDKs)." >&2
    exit 1
fi

targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)
rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
    echo "== client-bridge for $t"
    cargo rustc --locked --release -p client-bridge --lib --crate-type staticlib --target "$t"
done

lib=libclient_bridge.a
build=ios/build
rm -rf "$build" && mkdir -p "$build/headers" "$build/ios-sim" "$build/macos"
# Two uniffi components live in the one library (the core's types and the client): both headers, and
# both modules in the one file SwiftPM and Xcode look for, module.modulemap.
cp ios/Generated/client_bridgeFFI.h ios/Generated/sqlite_extFFI.h "$build/headers/"
cat ios/Generated/client_bridgeFFI.modulemap ios/Generated/sqlite_extFFI.modulemap > "$build/headers/module.modulemap"
lipo -create target/aarch64-apple-ios-sim/release/$lib target/x86_64-apple-ios/release/$lib \
    -output "$build/ios-sim/$lib"
lipo -create target/aarch64-apple-darwin/release/$lib target/x86_64-apple-darwin/release/$lib \
    -output "$build/macos/$lib"

xcodebuild -create-xcframework \
    -library target/aarch64-apple-ios/release/$lib -headers "$build/headers" \
    -library "$build/ios-sim/$lib" -headers "$build/headers" \
    -library "$build/macos/$lib" -headers "$build/headers" \
    -output "$build/client_bridgeFFI.xcframework"
echo "built $build/client_bridgeFFI.xcframework"
