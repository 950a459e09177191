// Use the system Chromium (Debian's `chromium`); puppeteer cannot download its own browser offline.
module.exports = { skipDownload: true };
