import SwiftUI
import MoatKit

/// Always on screen: offline / connecting / syncing (with progress) / live, and what is waiting.
struct StatusBarView: View {
    let status: Status?
    /// The last sync failure, in words for the user.
    let error: String?
    let rejection: RejectedNotice?
    let showRejected: () -> Void

    var body: some View {
        HStack(spacing: 10) {
            Circle().fill(color).frame(width: 8, height: 8)
            Text(status?.label ?? "Connecting…").font(.footnote.weight(.semibold))
            if let message = status?.message {
                Text(message).font(.caption).foregroundStyle(.secondary).lineLimit(2)
            }
            if let error {
                Text(error).font(.caption).foregroundStyle(.secondary).lineLimit(2)
            }
            if let s = status, s.phase == .syncing, s.rows > 0 {
                ProgressView(value: Double(s.rowsDone), total: Double(s.rows)).frame(maxWidth: 120)
            }
            Spacer()
            if let s = status {
                Text(s.pending > 0 ? "\(s.pending) pending" : "All changes saved").font(.footnote)
                if s.rejected > 0 {
                    Button("\(s.rejected) refused", action: showRejected).font(.footnote).tint(.red)
                }
            }
        }
        .padding(.horizontal)
        .padding(.vertical, 8)
        .background(.bar)
        .overlay(alignment: .top) {
            if let rejection {
                Text("Refused: \(rejection.reason)").font(.caption).foregroundStyle(.red).offset(y: -18)
            }
        }
    }

    private var color: Color {
        switch status?.phase {
        case .live: return .green
        case .syncing, .connecting: return .orange
        case .unauthorized, .outdated: return .red
        case .offline, nil: return .gray
        }
    }
}
