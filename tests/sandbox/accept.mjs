// Open the CDS Hooks Sandbox for one patient in headless Chromium, take a screenshot of the
// cards, click one suggestion by its label, and wait for the feedback the Sandbox sends.
// Usage: node accept.mjs <sandbox URL> <service base> <FHIR base> <patient> <label> <outdir>
// Prints one JSON line: the cards shown, the service exchanges, the feedback sent and its status.
// Every host name but 127.0.0.1/localhost fails to resolve, so traffic stays on loopback.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [sandbox, serviceBase, fhirBase, patient, label, outDir] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(outDir, { recursive: true });

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const result = { patient, label, exchanges: [], pageErrors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => result.pageErrors.push(String(e).slice(0, 500)));
  page.on('response', async (r) => {
    if (!r.url().startsWith(serviceBase)) return;
    let body = null;
    try { body = await r.text(); } catch { body = null; }
    result.exchanges.push({
      method: r.request().method(), url: r.url(), status: r.status(),
      request: r.request().postData() ? JSON.parse(r.request().postData()) : null,
      response: (() => { try { return JSON.parse(body); } catch { return body; } })(),
    });
  });
  const qs = new URLSearchParams({
    serviceDiscoveryURL: `${serviceBase}/cds-services`, fhirServiceUrl: fhirBase, patientId: patient,
  });
  const call = page.waitForResponse(
    (r) => r.url().startsWith(`${serviceBase}/cds-services/`) && r.request().method() === 'POST'
      && !r.url().endsWith('/feedback'),
    { timeout: 60000 },
  );
  await page.goto(`${sandbox}?${qs}`, { waitUntil: 'load' });
  await call;
  const button = page.getByRole('button', { name: label }).first();
  await button.waitFor({ state: 'visible', timeout: 30000 });
  await page.waitForTimeout(500);
  result.screenshot = path.join(outDir, `${patient}-cards.png`);
  await page.screenshot({ path: result.screenshot, fullPage: true });
  result.cardsShown = await page.$$eval('[class*="decision-card"]', (els) => els.map((e) => e.innerText.slice(0, 2000)));
  const feedback = page.waitForResponse((r) => r.url().endsWith('/feedback'), { timeout: 30000 });
  await button.click();
  const answer = await feedback;
  result.feedbackStatus = answer.status();
  result.feedbackSent = JSON.parse(answer.request().postData());
  await page.waitForTimeout(500);
  result.afterScreenshot = path.join(outDir, `${patient}-after-accept.png`);
  await page.screenshot({ path: result.afterScreenshot, fullPage: true });
} catch (err) {
  result.error = String(err).slice(0, 1000);
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
