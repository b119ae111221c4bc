import { useEffect, useState } from "react";
import type { DeviceRecord } from "../sdk";
import { useClient } from "./hooks";

/** A write waiting longer than this on a connected device is shown as stuck. */
const STUCK_MS = 5 * 60_000;
/** The page asks again this often while it is open. */
const REFRESH_MS = 10_000;

/** "just now", "4 min ago", "3 h ago", "2 days ago". */
function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  const d = Math.round(s / 86_400);
  return `${d} day${d === 1 ? "" : "s"} ago`;
}

/** "40 s", "12 min", "3 h". */
function span(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

const platforms: Record<string, string> = { web: "Web browser", ios: "iPhone / iPad", macos: "Mac", linux: "Linux", android: "Android" };

/** Sync health, for the company's admins: every device, when it was last seen, what waits on it. */
export function SyncHealthPage() {
  const { client } = useClient();
  const [devices, setDevices] = useState<DeviceRecord[] | null>(null);
  const [asked, setAsked] = useState(Date.now());

  useEffect(() => {
    const off = client.on((ev) => {
      if (ev.type === "fleet") {
        setDevices(ev.devices);
        setAsked(Date.now());
      }
    });
    const ask = () => void client.requestDevices();
    ask();
    const timer = setInterval(ask, REFRESH_MS);
    return () => {
      off();
      clearInterval(timer);
    };
  }, [client]);

  const stuck = devices?.filter((d) => d.connected && (d.oldest_pending_ms ?? 0) > STUCK_MS).length ?? 0;
  const failing = devices?.filter((d) => d.last_error || d.rejected > 0).length ?? 0;
  return (
    <section className="list" data-testid="sync-health">
      <div className="page-head">
        <h1>Sync health</h1>
        {devices && (
          <span className="muted" data-testid="sync-health-summary">
            {devices.filter((d) => d.connected).length} connected of {devices.length} devices
            {stuck > 0 && ` · ${stuck} with stuck changes`}
            {failing > 0 && ` · ${failing} with problems`}
          </span>
        )}
        <button className="link" style={{ marginLeft: "auto" }} onClick={() => void client.requestDevices()}>
          Refresh
        </button>
      </div>
      {!devices && <p className="muted pad">Asking the server for your company's devices…</p>}
      {devices && devices.length === 0 && <p className="muted pad">No device has connected yet.</p>}
      {devices && devices.length > 0 && (
        <div className="table-wrap">
          <table className="table health">
            <caption className="sr-only">Devices of your company and the state of their sync</caption>
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Device</th>
                <th scope="col">Last seen</th>
                <th scope="col">Waiting to sync</th>
                <th scope="col">Refused</th>
                <th scope="col">Conflicts</th>
                <th scope="col">Last problem</th>
              </tr>
            </thead>
            <tbody>
              {devices.map((d) => {
                const oldest = d.oldest_pending_ms ?? 0;
                const isStuck = d.connected && oldest > STUCK_MS;
                return (
                  <tr key={d.client_id} data-testid={`device-${d.user}`} className={isStuck || d.last_error ? "attention" : undefined}>
                    <td>
                      {d.user} <span className="muted small">{d.role}</span>
                    </td>
                    <td>
                      {platforms[d.platform] ?? (d.platform || "Unknown")}
                      {d.app_version && <span className="muted small"> · app {d.app_version}</span>}
                    </td>
                    <td data-testid="last-seen">
                      {d.connected ? (
                        <span className="chip online">Connected</span>
                      ) : (
                        ago(asked - d.last_seen_ms)
                      )}
                    </td>
                    <td data-testid="pending">
                      {d.pending === 0 ? (
                        <span className="muted">Nothing</span>
                      ) : (
                        <>
                          {d.pending} change{d.pending === 1 ? "" : "s"}
                          {oldest > 0 && <span className={isStuck ? "error small" : "muted small"}> · oldest {span(oldest)}</span>}
                        </>
                      )}
                    </td>
                    <td>{d.rejected || <span className="muted">0</span>}</td>
                    <td>{d.conflicts || <span className="muted">0</span>}</td>
                    <td className={d.last_error ? "error small" : "muted small"}>{d.last_error ?? "None"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
