// Tiny DOM helpers shared by the pages.

/** Element by id; throws when the page is missing it (a build error). */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from the page`);
  return el;
}

/** Sets text only when it changed (spares layout and screen readers). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** The token of the page's URL, kept out of the address bar afterwards. */
export function takeToken(storageKey) {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl && storageKey) {
    sessionStorage.setItem(storageKey, fromUrl);
  }
  return fromUrl || (storageKey ? sessionStorage.getItem(storageKey) : null);
}
