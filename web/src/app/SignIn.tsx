import { useEffect, useState } from "react";
import { roleLabel, tenantLabel, type Session } from "./session";

interface DemoUser extends Session {}


/** Demo sign-in: the server's seeded users (admin and technician of each company). */
export function SignIn({ onSignIn }: { onSignIn: (s: Session) => void }) {
  const [users, setUsers] = useState<DemoUser[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    fetch("/demo/users")
      .then((r) => (r.ok ? (r.json() as Promise<DemoUser[]>) : Promise.reject(new Error(`${r.status}`))))
      .then(setUsers)
      .catch(() => setError("The server offers no demo users (start it with `moat serve --demo`), or it cannot be reached."));
  }, []);

  const tenants = [...new Set((users ?? []).map((u) => u.tenant))];
  return (
    <div className="signin">
      <div className="signin-card">
        <div className="brand brand-large">
          <span className="brand-mark">M</span> Moat
        </div>
        <p className="muted">Field service, in step on every device, online or not.</p>
        <h2>Sign in as</h2>
        {error && <p className="error">{error}</p>}
        {!users && !error && <p className="muted">Loading users…</p>}
        {tenants.map((t) => (
          <section key={t} className="tenant-group">
            <h3>{tenantLabel(t)}</h3>
            {(users ?? [])
              .filter((u) => u.tenant === t)
              .map((u) => (
                <button
                  key={u.user}
                  className="user-choice"
                  data-testid={`signin-${u.user}`}
                  onClick={() => onSignIn(u)}
                >
                  <span className="avatar">{u.name.slice(0, 1)}</span>
                  <span>
                    <strong>{u.name}</strong>
                    <span className="muted small">{roleLabel(u.role)}</span>
                  </span>
                </button>
              ))}
          </section>
        ))}
      </div>
    </div>
  );
}
