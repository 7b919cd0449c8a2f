// Opens the API reference at BASE/docs in headless Chromium with every request to another origin
// refused, as on a machine with no network, and checks what a partner's engineer would look for:
// every route of /openapi.json under its group, and POST /User with the seed's example and its 400
// ValidationProblemDetails schema. Prints one JSON report; exits 1 when anything is missing.
// Usage: node docs.mjs BASE SCREENSHOT.png
import { launch, offlinePage } from "./offline.mjs";

const [base, screenshot] = process.argv.slice(2);
const report = { outside: [], consoleErrors: [], missing: [], checked: 0, example: false, validationProblem: false };

const browser = await launch();
try {
  const page = await offlinePage(browser, base, report, { width: 1280, height: 2000 });

  await page.goto(`${base}/docs`, { waitUntil: "networkidle" });
  await page.waitForSelector(".opblock-tag-section .opblock", { timeout: 20000 });
  const spec = await (await fetch(`${base}/openapi.json`)).json();

  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (!["get", "post", "put", "patch", "delete"].includes(method)) continue;
      report.checked += 1;
      const group = page.locator(".opblock-tag-section").filter({ has: page.locator(`h3[data-tag="${operation.tags[0]}"]`) });
      const found = group.locator(`.opblock-${method}`).filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) });
      if ((await found.count()) !== 1) report.missing.push(`${method.toUpperCase()} ${path} under "${operation.tags[0]}"`);
    }
  }

  const createUser = page.locator(".opblock-post").filter({ has: page.locator('.opblock-summary-path[data-path="/User"]') });
  await createUser.locator(".opblock-summary").first().click();
  await createUser.locator(".opblock-body").waitFor();
  const body = await createUser.locator(".opblock-body").innerText();
  report.example = body.includes('"merchantId": 9101') && body.includes('"email": "client.name@example.org"');
  const badRequest = createUser.locator('tr.response[data-code="400"]');
  await badRequest.locator('button[data-name="model"]').first().click();
  const schema = await badRequest.innerText();
  report.validationProblem = schema.includes("ValidationProblemDetails") && schema.includes("errors");
  await createUser.scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshot, fullPage: false });
} finally {
  await browser.close();
}

console.log(JSON.stringify(report, null, 2));
const ok = report.outside.length === 0 && report.consoleErrors.length === 0 && report.missing.length === 0
  && report.checked > 0 && report.example && report.validationProblem;
process.exit(ok ? 0 : 1);
