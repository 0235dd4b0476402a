"use strict";

// The dashboard's live part: fetched again every few seconds (the session cookie goes along).
const main = document.querySelector("main.admin");
const refreshMs = Number(main.dataset.refreshMs) || 10000;

async function refresh() {
  try {
    const response = await fetch("/admin/panel", { cache: "no-store" });
    if (response.status === 401) location.reload(); // the session ended: back to the login form
    else if (response.ok) document.getElementById("panel").innerHTML = await response.text();
  } catch {
    // The server is unreachable for now; the next refresh tries again.
  }
  setTimeout(refresh, refreshMs);
}

setTimeout(refresh, refreshMs);
