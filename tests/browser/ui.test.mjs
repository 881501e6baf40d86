// End-to-end test of the netpulse web UI in a real headless browser (Debian's Chromium
// driven by playwright-core). It proves that data flows from simulated gNMI devices
// through the collector and the store to the browser, and that a device page updates
// live over server-sent events without being reloaded.
//
// Run: scripts/browser-test (installs what is missing), or `node --test tests/browser/`.
// Environment:
//   NETPULSE_BIN     netpulse binary (default: ../../target/debug/netpulse from this file)
//   CHROMIUM_BIN     browser (default: /usr/bin/chromium)
// Screenshots, the browser console and netpulse's log go to tests/browser/artifacts/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const NETPULSE_BIN = resolve(HERE, process.env.NETPULSE_BIN || '../../target/debug/netpulse');
const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARTIFACTS = join(HERE, 'artifacts');
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Upper bound of every single wait in this file. */
const WAIT_MS = 60_000;
const READY_LINE = /^netpulse is running with (\d+) devices: open (http:\/\/127\.0\.0\.1:\d+\/)\s*$/;

// ---------------------------------------------------------------------------------------
// netpulse process

/**
 * Starts `netpulse all` with two simulated devices on a fresh SQLite database and resolves
 * with the URL it prints once it is serving. Its stdout and stderr go to `logPath`.
 */
function startNetpulse(dataDir, logPath) {
  if (!existsSync(NETPULSE_BIN)) {
    throw new Error(`netpulse binary not found at ${NETPULSE_BIN}: run \`cargo build --bin netpulse\` or set NETPULSE_BIN`);
  }
  const args = [
    'all',
    '--simulate', '2',
    '--listen', '127.0.0.1:0',
    '--database-url', `sqlite:${join(dataDir, 'n.db')}`,
    '--base-address', '127.0.88.1',
    '--port', '0',
    '--sample-interval', '1s',
  ];
  const child = spawn(NETPULSE_BIN, args, {
    cwd: dataDir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1', },
  });
  const log = createWriteStream(logPath);
  log.write(`$ ${NETPULSE_BIN} ${args.join(' ')}\n`);
  child.stderr.pipe(log, { end: false });
  const tail = [];
  child.stderr.on('data', (chunk) => {
    tail.push(chunk.toString());
    if (tail.length > 50) tail.shift();
  });
  // 'close', not 'exit': output may still arrive between the two.
  child.on('close', (code, signal) => log.end(`\n[netpulse exited: code ${code}, signal ${signal}]\n`));

  const ready = new Promise((resolveReady, rejectReady) => {
    const timer = setTimeout(
      () => rejectReady(new Error(`netpulse printed no "netpulse is running" line within ${WAIT_MS} ms`)),
      WAIT_MS,
    );
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      log.write(`[stdout] ${line}\n`);
      const m = READY_LINE.exec(line);
      if (m) {
        clearTimeout(timer);
        resolveReady({ devices: Number(m[1]), url: m[2] });
      }
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      rejectReady(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      rejectReady(new Error(`netpulse exited before it was ready (code ${code}, signal ${signal}):\n${tail.join('')}`));
    });
  });
  return { child, ready };
}

/** Stops a child process: SIGTERM, then SIGKILL after 5 s. Resolves once it has exited. */
function stopProcess(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(kill);
      done();
    });
    child.kill('SIGTERM');
  });
}

// ---------------------------------------------------------------------------------------
// the test

describe('netpulse web UI in headless Chromium', { timeout: 5 * WAIT_MS }, () => {
  let tmp;
  let netpulse;
  let baseUrl;
  let context;
  let page;
  const pageErrors = [];
  const consoleLines = [];
  const badResponses = [];
  let earlierStepFailed = false;

  /** Runs a step of the scenario; skips it when an earlier step failed. */
  function step(name, fn) {
    it(name, async (t) => {
      if (earlierStepFailed) {
        t.skip('an earlier step failed');
        return;
      }
      try {
        await fn(t);
      } catch (err) {
        earlierStepFailed = true;
        await page?.screenshot({ path: join(ARTIFACTS, `failure-${name.replace(/\W+/g, '-')}.png`), fullPage: true })
          .catch(() => {});
        throw err;
      }
    });
  }

  // Kill netpulse even if the runner is torn down without running `after`.
  const killOnExit = () => netpulse?.child.kill('SIGKILL');

  before(async () => {
    rmSync(ARTIFACTS, { recursive: true, force: true });
    mkdirSync(ARTIFACTS, { recursive: true });
    tmp = mkdtempSync(join(tmpdir(), 'netpulse-browser-'));
    process.once('exit', killOnExit);
    netpulse = startNetpulse(tmp, join(ARTIFACTS, 'netpulse.log'));
    const { devices, url } = await netpulse.ready;
    assert.equal(devices, 2, 'netpulse should report the two simulated devices');
    baseUrl = url;

    context = await chromium.launchPersistentContext(join(tmp, 'chromium-profile'), {
      executablePath: CHROMIUM_BIN,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 800 },
      colorScheme: 'dark',
      timeout: WAIT_MS,
    });
    context.setDefaultTimeout(WAIT_MS);
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.stack || err.message}`));
    page.on('console', (msg) => {
      const loc = msg.location();
      consoleLines.push(`[${msg.type()}] ${msg.text()}${loc?.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
    });
    page.on('response', (res) => {
      if (res.status() >= 400) badResponses.push(`${res.status()} ${res.request().method()} ${res.url()}`);
    });
    page.on('requestfailed', (req) => {
      // Leaving a page aborts its open EventSource or a refresh in flight: not the app's fault.
      const error = req.failure()?.errorText;
      if (error !== 'net::ERR_ABORTED') badResponses.push(`failed ${req.method()} ${req.url()}: ${error}`);
    });
  });

  after(async () => {
    const report = [
      `page errors (${pageErrors.length}):`, ...pageErrors,
      `console (${consoleLines.length}):`, ...consoleLines,
      `HTTP responses >= 400 or failed requests (${badResponses.length}):`, ...badResponses,
    ];
    try {
      writeFileSync(join(ARTIFACTS, 'console.log'), `${report.join('\n')}\n`);
    } catch {}
    await context?.close().catch(() => {});
    await stopProcess(netpulse?.child);
    process.removeListener('exit', killOnExit);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  step('device list shows sim-0001 and sim-0002 as synced', async () => {
    await page.goto(baseUrl, { waitUntil: 'load' });
    const allSynced = () => page.evaluate(() => ['sim-0001', 'sim-0002'].every((name) => {
      const badge = document.querySelector(`#devices tr[data-device="${name}"] .badge`);
      return badge?.textContent.trim() === 'synced';
    }));
    // The table re-fetches itself every 5 s; reload once as well if that has not done it.
    const deadline = Date.now() + WAIT_MS;
    let reloaded = false;
    while (!(await allSynced())) {
      assert.ok(Date.now() < deadline, `devices not both synced within ${WAIT_MS} ms: ${await page.locator('#devices').innerText()}`);
      if (!reloaded && Date.now() > deadline - WAIT_MS / 2) {
        await page.reload({ waitUntil: 'load' });
        reloaded = true;
      }
      await page.waitForTimeout(500);
    }
    const rows = await page.locator('#devices tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.device));
    assert.deepEqual(rows, ['sim-0001', 'sim-0002']);
    // The link leads to the device page.
    assert.equal(await page.locator('#devices a[href="/devices/sim-0001"]').innerText(), 'sim-0001');
    await page.screenshot({ path: join(ARTIFACTS, 'devices.png'), fullPage: true });
  });

  step('device list refreshes itself in place', async () => {
    // Tag the table the page has now: the refresh replaces it with a new element.
    await page.evaluate(() => {
      window.__netpulseE2eMarker = 'index';
      document.getElementById('devices').dataset.e2eOld = '1';
    });
    const refreshed = await page.waitForResponse(
      (res) => new URL(res.url()).pathname === '/fragments/devices',
      { timeout: 15_000 },
    );
    assert.equal(refreshed.status(), 200);
    await page.waitForFunction(() => {
      const table = document.getElementById('devices');
      return table && !table.dataset.e2eOld;
    }, null, { timeout: 15_000 });
    const rows = await page.locator('#devices tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.device));
    assert.deepEqual(rows, ['sim-0001', 'sim-0002']);
    assert.equal(await page.evaluate(() => window.__netpulseE2eMarker), 'index', 'no reload');
  });

  step('device page shows the Ethernet1 chart and goes live', async () => {
    await page.goto(new URL('/devices/sim-0001', baseUrl).href, { waitUntil: 'load' });
    assert.match(await page.title(), /^sim-0001 · netpulse$/);
    await page.waitForFunction(() => {
      const path = document.querySelector('svg#chart-Ethernet1 path.line.in');
      return path && (path.getAttribute('d') || '').trim().length > 0;
    }, null, { timeout: WAIT_MS });
    const chart = page.locator('svg#chart-Ethernet1');
    await assert.doesNotReject(chart.locator('path.line.out').waitFor({ state: 'attached', timeout: WAIT_MS }));
    // Axes and legend are rendered on the server.
    assert.ok((await chart.locator('text.axis').count()) >= 4, 'chart has axis labels');
    assert.deepEqual(await chart.locator('text.legend').allTextContents(), ['in', 'out']);
    await page.waitForFunction(() => {
      const live = document.getElementById('live');
      return live && /^live\b/.test(live.textContent.trim()) && live.classList.contains('live');
    }, null, { timeout: WAIT_MS });
  });

  step('chart updates live over SSE without a reload', async () => {
    const start = await page.evaluate(() => {
      window.__netpulseE2eMarker = 'marker-' + Math.random();
      return {
        marker: window.__netpulseE2eMarker,
        d: document.querySelector('svg#chart-Ethernet1 path.line.in').getAttribute('d'),
        charts: window.netpulse.charts,
        samples: window.netpulse.samples,
        navigations: performance.getEntriesByType('navigation').length,
      };
    });
    assert.equal(start.navigations, 1);
    let mainFrameNavigations = 0;
    const onNavigated = (frame) => {
      if (frame === page.mainFrame()) mainFrameNavigations += 1;
    };
    page.on('framenavigated', onNavigated);
    try {
      await page.waitForFunction((b) => {
        const path = document.querySelector('svg#chart-Ethernet1 path.line.in');
        return path && path.getAttribute('d') !== b.d
          && window.netpulse.samples > b.samples && window.netpulse.charts > b.charts;
      }, start, { timeout: WAIT_MS, polling: 250 });
    } finally {
      page.off('framenavigated', onNavigated);
    }
    const now = await page.evaluate(() => ({
      marker: window.__netpulseE2eMarker,
      d: document.querySelector('svg#chart-Ethernet1 path.line.in').getAttribute('d'),
      charts: window.netpulse.charts,
      samples: window.netpulse.samples,
      navigations: performance.getEntriesByType('navigation').length,
      chartElements: document.querySelectorAll('svg#chart-Ethernet1').length,
      live: document.getElementById('live').textContent,
      mode: window.netpulse.mode,
    }));
    assert.equal(now.navigations, 1, 'the page was not navigated again');
    assert.equal(now.marker, start.marker, 'the marker set on window survived: same document');
    assert.equal(mainFrameNavigations, 0, 'no main-frame navigation while waiting');
    assert.equal(now.chartElements, 1, 'the chart was replaced, not duplicated');
    assert.notEqual(now.d, start.d);
    assert.ok(now.samples > start.samples && now.charts > start.charts);
    assert.equal(now.mode, 'live');
    assert.match(now.live, /^live · \d+ new samples at \d\d:\d\d:\d\d UTC$/);
    await page.screenshot({ path: join(ARTIFACTS, 'device-sim-0001.png'), fullPage: true });
    await page.locator('figure:has(svg#chart-Ethernet1)').screenshot({ path: join(ARTIFACTS, 'chart-Ethernet1.png') });
    // The browser's stream was held without hyper's buffers (web::held), although
    // Chromium asks for it on a connection it used for the page before.
    const metrics = await (await fetch(new URL('/metrics', baseUrl))).text();
    writeFileSync(join(ARTIFACTS, 'metrics.txt'), metrics);
    assert.match(metrics, /^netpulse_web_sse_held_total [1-9]/m);
  });

  it('no JavaScript errors, console errors or failed requests on the pages', () => {
    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
    const consoleErrors = consoleLines.filter((l) => l.startsWith('[error]'));
    assert.deepEqual(consoleErrors, [], 'console errors');
    assert.deepEqual(badResponses, [], 'HTTP errors or failed requests');
  });
});
