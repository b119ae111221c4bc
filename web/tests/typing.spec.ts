// An edit is never written over a change that arrived while the user typed: Tom types in Notes while
// Alice saves Notes; when Tom leaves the field, the conflict alert shows base, Alice's and his text,
// and nothing changes until he chooses.
import type { Page } from "@playwright/test";
import { test, expect, signIn, openRecord, firstRowIds } from "./fixtures";

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
