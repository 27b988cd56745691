// The headless Chromium every browser bench script runs in: the system's build (never a
// download), with the flags that keep background work out of the measurements.
import { chromium } from 'playwright-core';

/** Launches headless Chromium (`CHROMIUM` names another binary). */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}
