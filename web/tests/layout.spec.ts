// A change to `layout_definition` (a field added to the technician's job layout, a section renamed)
// re-renders an open detail page live, and a change to `object_metadata` shows in the open object list.
import { test, expect, signIn, openRecord, firstRowIds } from "./fixtures";

test("layout and metadata changes re-render open pages live", async ({ browser, server }) => {
  const tech = await (await browser.newContext()).newPage();
  const admin = await (await browser.newContext()).newPage();
  await signIn(tech, server, "tom");
  await signIn(admin, server, "alice");
  const [id] = await firstRowIds(tech, 1);
  await openRecord(tech, server, "jobs", id!);
  await expect(tech.getByTestId("field-assignee")).toHaveCount(0);
  const before = await tech.getByTestId("detail").locator("[data-widget]").evaluateAll((els) =>
    els.map((e) => e.getAttribute("data-testid")),
  );

  // The admin adds the assignee (read-only) to the technician's layout and renames a section.
  await admin.evaluate(async () => {
    const layoutId = "company-a:jobs:detail:technician";
    const sections = [
      {
        id: "visit",
        label: "On site",
        columns: 2,
        fields: [
          { field: "title", widget: "text", read_only: true },
          { field: "assignee", widget: "text", read_only: true, label: "Assigned to" },
          { field: "status", widget: "choice" },
          { field: "scheduled_date", widget: "date", read_only: true },
          { field: "customer_id", widget: "reference", read_only: true },
          { field: "price_cents", widget: "currency", read_only: true, label: "Quoted price" },
        ],
      },
      {
        id: "work",
        label: "Work done",
        columns: 1,
        fields: [
          { field: "line_items", widget: "line_items" },
          { field: "notes", widget: "multiline", label: "Technician notes" },
        ],
      },
    ];
    await window.moat!.updateRow("layout_definition", layoutId, "sections", {
      type: "text",
      value: JSON.stringify(sections),
    });
  });

  // No reload: the open page re-renders from the synced row, in the layout's order.
  await expect(tech.getByTestId("field-assignee")).toContainText("Assigned to");
  await expect(tech.getByTestId("section-visit")).toContainText("On site");
  const after = await tech.getByTestId("detail").locator("[data-widget]").evaluateAll((els) =>
    els.map((e) => e.getAttribute("data-testid")),
  );
  expect(after).toEqual([before[0], "field-assignee", ...before.slice(1)]);

  // Object types are rows, not code: the admin relabels one and the technician's list follows.
  await admin.evaluate(async () => {
    await window.moat!.updateRow("object_metadata", "company-a:inventory_items", "label_plural", {
      type: "text",
      value: "Parts & stock",
    });
  });
  await expect(tech.getByTestId("type-inventory_items")).toContainText("Parts & stock");
});
