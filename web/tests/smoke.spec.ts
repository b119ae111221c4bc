import { test, expect, signIn } from "./fixtures";

test("admin sees object types and a list", async ({ page, server }) => {
  page.on("console", (m) => console.log("console:", m.text()));
  page.on("pageerror", (e) => console.log("pageerror:", e.message));
  await signIn(page, server, "alice");
  await expect(page.getByTestId("object-types")).toContainText("Jobs");
});
