// An edit is never written over a change that arrived while the user typed: Tom types in Notes while
// Alice saves Notes; when Tom leaves the field, the conflict alert shows base, Alice's and his text,
// and nothing changes until he chooses.
import type { Page } from "@playwright/test";
import { test, expect, signIn, openRecord, firstRowIds, serverQuery } from "./fixtures";

async function notes(page: Page, id: string): Promise<string> {
  return page.evaluate(async (id) => {
    const d = await window.moat!.detailView("jobs", id);
    const f = d.sections.flatMap((s) => s.fields).find((x) => x.field === "notes");
    return f && f.cell.value.type === "text" ? f.cell.value.value : "";
  }, id);
}

test("an edit made while someone else saved the same field raises the alert", async ({ browser, server }) => {
  const tom = await (await browser.newContext()).newPage();
  const alice = await (await browser.newContext()).newPage();
  await signIn(tom, server, "tom");
  await signIn(alice, server, "alice");
  const [id] = await firstRowIds(tom, 1);
  await openRecord(tom, server, "jobs", id!);
  await openRecord(alice, server, "jobs", id!);
  const before = await notes(tom, id!);

  // Tom starts typing (the field keeps focus), then Alice saves hers and it reaches Tom's device.
  const tomsInput = tom.getByTestId("field-notes-input");
  await tomsInput.fill("Tom: the dog is friendly");
  await alice.getByTestId("field-notes-input").fill("Alice: gate code 4411");
  await alice.getByTestId("field-notes-input").blur();
  await expect.poll(() => notes(tom, id!)).toBe("Alice: gate code 4411");
  await expect(tomsInput).toHaveValue("Tom: the dog is friendly", { timeout: 1 }); // his text stays while he types
  // ...and he is told at once, before he saves.
  await expect(tom.getByTestId("field-notes-moved")).toHaveText(
    "Changed by someone else meanwhile to “Alice: gate code 4411”. Saving asks which to keep.",
  );

  // He leaves the field: no silent overwrite, the alert.
  await tomsInput.blur();
  const dialog = tom.getByTestId("conflict");
  await expect(dialog).toBeVisible();
  const row = dialog.getByTestId("conflict-notes");
  await expect(row.getByTestId("conflict-base")).toHaveText(before || "(empty)");
  await expect(row.getByTestId("conflict-theirs")).toHaveText("Alice: gate code 4411");
  await expect(row.getByTestId("conflict-mine")).toHaveText("Tom: the dog is friendly");
  expect(await notes(alice, id!)).toBe("Alice: gate code 4411");

  await dialog.getByTestId("conflict-keep-mine").click();
  await expect(dialog).toHaveCount(0);
  await expect.poll(() => notes(alice, id!)).toBe("Tom: the dog is friendly");
});

test("saving a field twice in a row is the user's own doing: no alert, the second text stays", async ({ browser, server }) => {
  const page = await (await browser.newContext()).newPage();
  await signIn(page, server, "alice");
  const [id] = await firstRowIds(page, 1);
  await openRecord(page, server, "jobs", id!);

  // Type, leave, come back and type again: in one go, before the first save has reached the page.
  const twice = (first: string, second: string) =>
    page.evaluate(
      ({ first, second }) => {
        const el = document.querySelector<HTMLTextAreaElement>('[data-testid="field-notes-input"]')!;
        const type = (v: string) => {
          Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value")!.set!.call(el, v);
          el.dispatchEvent(new Event("input", { bubbles: true }));
        };
        el.focus();
        type(first);
        el.blur();
        el.focus();
        type(second);
        el.blur();
      },
      { first, second },
    );

  await twice("Online: first", "Online: second");
  await expect.poll(() => notes(page, id!)).toBe("Online: second");
  await expect(page.getByTestId("field-notes-input")).toHaveValue("Online: second");

  await page.getByTestId("toggle-online").click();
  await expect(page.getByTestId("status")).toHaveAttribute("data-phase", "offline");
  await twice("Offline: first", "Offline: second");
  await expect.poll(() => notes(page, id!)).toBe("Offline: second");
  await page.getByTestId("toggle-online").click();
  await expect(page.getByTestId("status")).toHaveAttribute("data-phase", "live");
  await expect.poll(() => serverQuery(server, "SELECT notes FROM jobs WHERE id = ?", id!)[0]?.[0]).toBe("Offline: second");
  await expect(page.getByTestId("field-notes-input")).toHaveValue("Offline: second");
  await expect(page.getByTestId("conflict")).toHaveCount(0);
  await expect(page.getByTestId("status-conflicts")).toHaveCount(0);
});
