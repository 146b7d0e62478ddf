// Open the CDS Hooks Sandbox for one patient in headless Chromium, go to its PAMA Imaging view,
// pick one study by its code (an order-select call with a draft ServiceRequest), wait for a
// critical card from the service, click that card's first suggestion and wait for the feedback.
// Usage: node accept_order.mjs <sandbox URL> <service base> <FHIR base> <patient> <study code> <outdir>
// Prints one JSON line: the order calls and their answers, the cards shown, the feedback sent.
// Every host name but 127.0.0.1/localhost fails to resolve, so traffic stays on loopback.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [sandbox, serviceBase, fhirBase, patient, studyCode, outDir] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(outDir, { recursive: true });

const isServiceCall = (r) => r.url().startsWith(`${serviceBase}/cds-services/`)
  && r.request().method() === 'POST' && !r.url().endsWith('/feedback');
// the Sandbox calls order-select as soon as the view opens, with an empty draft: skip that one
const draftCodes = (body) => ((body.context && body.context.draftOrders && body.context.draftOrders.entry) || [])
  .flatMap((e) => (e.resource && e.resource.code && e.resource.code.coding) || []).map((c) => c.code);
const criticalCard = (body) => (body && body.cards || []).find((c) => c.indicator === 'critical');

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const result = { patient, studyCode, orderCalls: [], pageErrors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => result.pageErrors.push(String(e).slice(0, 500)));
  const qs = new URLSearchParams({
    serviceDiscoveryURL: `${serviceBase}/cds-services`, fhirServiceUrl: fhirBase, patientId: patient,
  });
  const patientView = page.waitForResponse(isServiceCall, { timeout: 60000 });
  await page.goto(`${sandbox}?${qs}`, { waitUntil: 'load' });
  await patientView;

  await page.getByRole('button', { name: 'PAMA Imaging', exact: true }).click();
  const orderCall = page.waitForResponse(
    (r) => isServiceCall(r) && draftCodes(JSON.parse(r.request().postData() || '{}')).includes(studyCode),
    { timeout: 60000 },
  );
  const search = page.getByText('Search orders', { exact: true }).first();
  await search.waitFor({ state: 'visible', timeout: 30000 });
  await search.click();
  await page.keyboard.type(studyCode, { delay: 50 });
  // react-select renders its options as plain divs: find the study's option by its text
  const option = page.locator('[class*="option"]').filter({ hasText: studyCode === '72148'
    ? 'spinal canal and contents, lumbar; without contrast' : studyCode }).first();
  await option.waitFor({ state: 'visible', timeout: 30000 });
  result.studyPicked = await option.innerText();
  await option.click();

  const answer = await orderCall;
  const body = JSON.parse(await answer.text());
  result.orderCalls.push({
    url: answer.url(), status: answer.status(), request: JSON.parse(answer.request().postData()), response: body,
  });
  const card = criticalCard(body);
  if (!card) throw new Error(`no critical card in the order-select answer: ${JSON.stringify(body).slice(0, 500)}`);
  result.card = card;
  result.clicked = card.suggestions[0];
  const button = page.getByRole('button', { name: result.clicked.label, exact: true }).first();
  await button.waitFor({ state: 'visible', timeout: 30000 });
  await page.waitForTimeout(500);
  result.screenshot = path.join(outDir, `${patient}-order-cards.png`);
  await page.screenshot({ path: result.screenshot, fullPage: true });
  result.cardsShown = await page.$$eval('[class*="decision-card"]', (els) => els.map((e) => e.innerText.slice(0, 2000)));
  const feedback = page.waitForResponse((r) => r.url().endsWith('/feedback'), { timeout: 30000 });
  await button.click();
  const sent = await feedback;
  result.feedbackStatus = sent.status();
  result.feedbackUrl = sent.url();
  result.feedbackSent = JSON.parse(sent.request().postData());
} catch (err) {
  result.error = String(err).slice(0, 1000);
  const pages = browser.contexts().flatMap((c) => c.pages());
  if (pages.length) await pages[0].screenshot({ path: path.join(outDir, `${patient}-error.png`), fullPage: true });
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
