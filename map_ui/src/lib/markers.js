// Marker elements: plain DOM, so they need no sprite or font files.

/** The car, drawn from above, pointing north (the marker rotates it). */
export function carElement() {
  const el = document.createElement("div");
  el.className = "car-marker";
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", "Your driver");
  el.innerHTML = `
    <svg viewBox="0 0 40 40" width="40" height="40" aria-hidden="true">
      <circle cx="20" cy="20" r="18" fill="rgba(29,78,216,0.16)"/>
      <rect x="13" y="7" width="14" height="26" rx="6" fill="#111827"/>
      <rect x="15" y="11" width="10" height="6" rx="2" fill="#93c5fd"/>
      <rect x="15" y="24" width="10" height="4" rx="1.5" fill="#93c5fd" opacity="0.7"/>
      <path d="M20 1l4 5h-8z" fill="#1d4ed8"/>
    </svg>`;
  return el;
}

/** A labelled pin for the pickup or the dropoff. */
export function pinElement(kind, label) {
  const el = document.createElement("div");
  el.className = `pin pin-${kind}`;
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", label);
  const tag = document.createElement("span");
  tag.className = "pin-label";
  tag.textContent = label;
  const dot = document.createElement("span");
  dot.className = "pin-dot";
  el.append(tag, dot);
  return el;
}
