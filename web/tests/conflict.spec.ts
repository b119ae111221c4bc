// Conflict: the same field edited in both contexts while one is offline raises the alert in the one
// that was offline, with base, theirs and mine; each resolution gives the expected state everywhere.
import type { Page } from "@playwright/test";
import { test, expect, signIn, openRecord, firstRowIds, shots } from "./fixtures";

const labels: Record<string, string> = {
  open: "Open",
  scheduled: "Scheduled",
  in_progress: "In progress",
  on_hold: "On hold",
  done: "Done",
};

async function fieldOf(page: Page, id: string, field: string): Promise<string> {
  return page.evaluate(
    async ([id, field]) => {
      const d = await window.moat!.detailView("jobs", id!);
      const f = d.sections.flatMap((s) => s.fields).find((x) => x.field === field);
      return f && f.cell.value.type === "text" ? f.cell.value.value : "";
    },
    [id, field],
  );
}

test("a same-field conflict is shown and each resolution converges", async ({ browser, server }) => {
  const techCtx = await browser.newContext();
  const tech = await techCtx.newPage();
  const admin = await (await browser.newContext()).newPage();
  await signIn(tech, server, "tom");
  await signIn(admin, server, "alice");
  const ids = await firstRowIds(tech, 3);

  // Two statuses other than the record's own: mine and theirs must both differ from the base.
  const others = async (id: string) => {
    const base = await fieldOf(tech, id, "status");
    return ["open", "scheduled", "in_progress", "on_hold", "done"].filter((s) => s !== base);
  };
  const [a0, a1] = await others(ids[0]!);
  const [b0, b1] = await others(ids[1]!);
  const rounds = [
    { id: ids[0]!, field: "status", mine: a0!, theirs: a1!, choice: "keep-mine", expected: a0! },
    { id: ids[1]!, field: "status", mine: b0!, theirs: b1!, choice: "take-theirs", expected: b1! },
    { id: ids[2]!, field: "notes", mine: "Tech: replaced the valve", theirs: "Office: bring a ladder", choice: "edit", expected: "Replaced the valve; ladder brought" },
  ];

  for (const r of rounds) {
    const base = await fieldOf(tech, r.id, r.field);
    await openRecord(tech, server, "jobs", r.id);
    await openRecord(admin, server, "jobs", r.id);
    await techCtx.setOffline(true);
    await expect(tech.getByTestId("status")).toHaveAttribute("data-phase", "offline");
    const input = (p: Page) => p.getByTestId(`field-${r.field}-input`);
    if (r.field === "status") {
      await input(tech).selectOption(r.mine);
      await input(admin).selectOption(r.theirs);
    } else {
      await input(tech).fill(r.mine);
      await input(tech).blur();
      await input(admin).fill(r.theirs);
      await input(admin).blur();
    }
    await expect.poll(() => serverValue(admin, r.id, r.field)).toBe(r.theirs);
    await techCtx.setOffline(false);

    const alert = tech.getByTestId("conflict");
    await expect(alert).toBeVisible();
    const row = alert.getByTestId(`conflict-${r.field}`);
    // Shown as the UI shows values: a status by its label, a note as written.
    const shown = (v: string) => labels[v] ?? v;
    await expect(row.getByTestId("conflict-base")).toHaveText(base ? shown(base) : "(empty)");
    await expect(row.getByTestId("conflict-theirs")).toHaveText(shown(r.theirs));
    await expect(row.getByTestId("conflict-mine")).toHaveText(shown(r.mine));
    await expect(row).toContainText(r.field === "status" ? "Status" : "Notes");
    await expect(admin.getByTestId("conflict")).toHaveCount(0); // the admin's write went through first
    if (r.choice === "edit") {
      await tech.screenshot({ path: `${shots}/conflict.png` });
      await alert.getByTestId("conflict-edit").click();
      await alert.getByTestId("conflict-edit-input").fill(r.expected);
      await alert.getByTestId("conflict-edit-save").click();
    } else {
      await alert.getByTestId(`conflict-${r.choice}`).click();
    }
    await expect(alert).toHaveCount(0);
    await expect(tech.getByTestId("status-pending")).toHaveAttribute("data-count", "0");
    await expect.poll(() => fieldOf(tech, r.id, r.field)).toBe(r.expected);
    await expect.poll(() => fieldOf(admin, r.id, r.field)).toBe(r.expected);
    await expect(tech.getByTestId("status-conflicts")).toHaveCount(0);
  }
});

/** The admin's server copy: what the server has told it (its pending queue is empty here). */
function serverValue(admin: Page, id: string, field: string): Promise<string> {
  return fieldOf(admin, id, field).then(async (v) => {
    const s = await admin.evaluate(() => window.moat!.status());
    return s.pending === 0 ? v : "";
  });
}
