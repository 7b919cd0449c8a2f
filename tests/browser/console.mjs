// Walks the staff console at BASE/admin/ui/ in headless Chromium as a reviewer and an operator
// would, with every request to another origin refused (the console works offline), and writes a
// screenshot of each page to OUTDIR. Seeded by tests/api/console.rs, which passes what it made in
// the environment: REVIEWER_TOKEN, OPERATOR_TOKEN, FIRST_CASE (the oldest), SECOND_CASE, EMAIL,
// PARTNER_ID, DEAD_JOB. Prints one JSON report; exits 1 when a step fails.
// Usage: node console.mjs BASE OUTDIR
import { launch, offlinePage } from "./offline.mjs";

const [base, outdir] = process.argv.slice(2);
const env = process.env;
const report = { outside: [], consoleErrors: [], steps: [], screenshots: [], failed: null };

function check(condition, step) {
  if (!condition) throw new Error(`step failed: ${step}`);
  report.steps.push(step);
}

const browser = await launch();
try {
  // A Content-Security-Policy violation (a blocked style or script) is a console error.
  const page = await offlinePage(browser, base, report, { width: 1280, height: 900 });
  const shot = async (name) => {
    const path = `${outdir}/${name}.png`;
    await page.screenshot({ path, fullPage: true });
    report.screenshots.push(path);
  };
  const main = () => page.locator("main");

  // Sign in with the keyboard: type the token, Enter submits.
  const signIn = async (token) => {
    await page.goto(`${base}/admin/ui/`);
    check(page.url().endsWith("/admin/ui/sign-in"), "no session: the console asks to sign in");
    // The field has `autofocus`; focusing it again keeps a slow first paint from racing the typing.
    await page.locator("#token").focus();
    await page.keyboard.type(token);
    await Promise.all([page.waitForURL("**/admin/ui/cases"), page.keyboard.press("Enter")]);
  };
  await page.goto(`${base}/admin/ui/sign-in`);
  const styled = await page.evaluate(() => getComputedStyle(document.body).fontFamily);
  check(styled.includes("system-ui"), "the stylesheet loads under the CSP");
  await shot("01-sign-in");
  await signIn(env.REVIEWER_TOKEN);
  check((await page.locator("header .who").innerText()).includes("compliance"), "signed in as the reviewer");

  // The queue, oldest first; open the oldest case.
  const rows = page.locator("table.queue tbody tr");
  check((await rows.count()) === 2, "two open cases in the queue");
  check((await rows.first().innerText()).includes(env.FIRST_CASE), "the oldest case comes first");
  await shot("02-queue");
  await Promise.all([page.waitForURL(`**/admin/ui/cases/${env.FIRST_CASE}`), rows.first().locator("a").click()]);

  // The evidence: the submitted identity next to each candidate.
  const candidate = page.locator("article.candidate").first();
  const evidence = await candidate.innerText();
  check(evidence.includes("MORENO") && evidence.includes("Programs") && evidence.includes("test:small"),
    "the case shows the candidate, its programs and the list");
  check((await main().locator("dl.identity").innerText()).includes("Daniel Moreno"), "next to the submitted identity");
  check((await main().innerText()).includes("You hold this case"), "opening the case holds it");
  await shot("03-case");

  // Clear it with a reason: it leaves the queue.
  await page.locator("#clear-reason").fill("Different person: born 1990 in Mexico City, the listed MORENO is not");
  await Promise.all([page.waitForURL("**/admin/ui/cases?**"), page.locator("button.clear").click()]);
  check((await main().innerText()).includes(`Case ${env.FIRST_CASE} cleared.`), "the queue says the case was cleared");
  check((await rows.filter({ hasText: env.FIRST_CASE }).count()) === 0, "the cleared case left the queue");
  check((await rows.count()) === 1, "one case is left");
  await shot("04-queue-after-clear");

  // The audit entry of the decision.
  await page.locator("nav a", { hasText: "Audit log" }).click();
  await page.waitForURL("**/admin/ui/audit");
  const audit = await page.locator("table.audit tbody tr").first().innerText();
  check(audit.includes("compliance.clear") && audit.includes(env.FIRST_CASE) && audit.includes("Different person"),
    "the audit log shows the clearance");
  await shot("05-audit");

  // Block the other.
  await page.goto(`${base}/admin/ui/cases/${env.SECOND_CASE}`);
  await page.locator("#block-reason").fill("Confirmed match: date of birth and nationality agree");
  await Promise.all([page.waitForURL("**/admin/ui/cases?**"), page.locator("button.block").click()]);
  check((await main().innerText()).includes(`Case ${env.SECOND_CASE} blocked.`), "the second case was blocked");
  check((await main().innerText()).includes("No open case"), "the queue is empty");

  // A user's timeline, found by e-mail within the partner.
  await page.locator("nav a", { hasText: "User timeline" }).click();
  await page.locator("#q").fill(env.EMAIL);
  await page.locator("#partner").selectOption(env.PARTNER_ID);
  await Promise.all([page.waitForURL("**/admin/ui/users/usr:*"), page.locator("main button[type=submit]").click()]);
  const timeline = await page.locator("ol.timeline").innerText();
  check(timeline.includes("UpgradePending/Compliance") && timeline.includes("UpgradeFailed/ComplianceBlocked"),
    "the timeline shows the user's events");
  check((await main().innerText()).includes("Screenings"), "and the screenings");
  await shot("06-user-timeline");

  // Reviewers do not see operations; operators retry a dead job.
  check((await page.locator("nav a", { hasText: "Operations" }).count()) === 0, "no Operations menu for a reviewer");
  await Promise.all([page.waitForURL("**/admin/ui/sign-in"), page.locator("header .who button").click()]);
  await signIn(env.OPERATOR_TOKEN);
  await page.locator("nav a", { hasText: "Operations" }).click();
  await page.waitForURL("**/admin/ui/ops");
  check((await main().innerText()).includes("seeded failure"), "the dead letter is listed with its error");
  await shot("07-operations");
  await Promise.all([
    page.waitForURL("**/admin/ui/ops?retried=*"),
    page.getByRole("button", { name: `Retry job ${env.DEAD_JOB}` }).click(),
  ]);
  check((await main().innerText()).includes(`Job ${env.DEAD_JOB} is queued again.`), "the job is queued again");
  check((await page.getByRole("button", { name: `Retry job ${env.DEAD_JOB}` }).count()) === 0, "and left the dead letters");
  await shot("08-operations-after-retry");
} catch (error) {
  report.failed = String(error);
} finally {
  await browser.close();
}

console.log(JSON.stringify(report, null, 2));
const ok = !report.failed && report.outside.length === 0 && report.consoleErrors.length === 0;
process.exit(ok ? 0 : 1);
