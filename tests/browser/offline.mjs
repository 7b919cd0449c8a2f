// What the browser tests share: Debian's Chromium, and a page on which every request to another
// origin is refused (recorded in report.outside), as on a machine with no network, and every
// console error — a Content-Security-Policy violation, a script error — is recorded in
// report.consoleErrors.
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu"] });
}

export async function offlinePage(browser, base, report, viewport) {
  const origin = new URL(base).origin;
  const page = await browser.newPage({ viewport });
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    report.outside.push(url);
    return route.abort();
  });
  page.on("console", (message) => message.type() === "error" && report.consoleErrors.push(message.text()));
  page.on("pageerror", (error) => report.consoleErrors.push(String(error)));
  return page;
}
