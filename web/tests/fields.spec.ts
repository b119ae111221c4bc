// The detail page's controls: each is named by its label (for screen readers and `getByLabel`), a
// refused value is marked on its field with the rule, and Escape takes the field back to what is stored.
import { test, expect, signIn, openRecord } from "./fixtures";

test("labels name their controls; a refusal is marked on the field and Escape clears it", async ({ page, server }) => {
  await signIn(page, server, "alice");
  await openRecord(page, server, "jobs", "job-a-00042");
  await expect(page.getByLabel("Notes", { exact: true })).toHaveAttribute("data-testid", "field-notes-input");
  await expect(page.getByRole("combobox", { name: "Status", exact: true })).toHaveAttribute("data-testid", "field-status-input");
  const title = page.getByRole("textbox", { name: "Title", exact: true });
  const stored = await title.inputValue();
  await title.fill("");
  await title.press("Enter");
  const error = page.getByTestId("field-title-error");
  await expect(error).toContainText("Title: a value is required");
  await expect(title).toHaveAttribute("aria-invalid", "true");
  await expect(title).toHaveAttribute("aria-describedby", "field-title-error");
  await title.focus();
  await title.press("Escape");
  await expect(error).toHaveCount(0);
  await expect(title).toHaveValue(stored);
  await expect(title).not.toHaveAttribute("aria-invalid", "true");
});
