"""What the page adds for people who use a screen reader, a keyboard, or see colours poorly.

Passed to `launch()` (Gradio 6 takes css/head there):

- Primary buttons: Gradio's default white on orange-500 is about 2.8:1; WCAG AA asks
  4.5:1 for text. Orange-700 keeps the brand colour at 5.2:1 (hover orange-800, 7.3:1),
  in the light and the dark theme. Stop buttons (Stop, Cancel, Exclude): white on
  red-500 is 3.8:1 in the light theme; red-700 gives 6.5:1 (hover red-800, 8.3:1), as
  Gradio's dark theme already does.
- Light theme only: the selected tab's name is orange-500 on white (2.8:1), so the accent
  is orange-700 there (on the dark theme's near-black, orange-500 already passes); the
  footer's "Use via API" and "Settings" are gray-400 on white (1.9:1), made zinc-600
  (7.7:1).
- `.sr-only`: visually hidden, still read (the Live tab's announcer).
- An ARIA live region: `#live-announce` gets role="status" / aria-live="polite", so a
  new transcript entry is read once, without moving focus. Gradio renders components
  after the page loads (and re-renders them), so a MutationObserver sets the attributes
  whenever the element appears.
- The streaming webcam's start button shows "Record" but Gradio 6.31 names it "capture
  photo" for assistive technology; its name is set to what it does, with the visible word
  in it (WCAG 2.5.3, label in name).
- After a refusal Gradio leaves a bare "Error" badge on each output once its toast has
  gone; the badge is given the toast's sentence, so what went wrong stays on the page.
"""

from __future__ import annotations

PRIMARY = "#c2410c"  # Tailwind orange-700: 5.18:1 against white
PRIMARY_HOVER = "#9a3412"  # orange-800: 7.3:1
STOP = "#b91c1c"  # red-700: 6.47:1
STOP_HOVER = "#991b1b"  # red-800: 8.3:1

CSS = f"""
.gradio-container, .dark .gradio-container {{
  --button-primary-background-fill: {PRIMARY};
  --button-primary-background-fill-hover: {PRIMARY_HOVER};
  --button-primary-border-color: {PRIMARY};
  --button-primary-border-color-hover: {PRIMARY_HOVER};
  --button-primary-text-color: #ffffff;
  --button-primary-text-color-hover: #ffffff;
  --button-cancel-background-fill: {STOP};
  --button-cancel-background-fill-hover: {STOP_HOVER};
  --button-cancel-border-color: {STOP};
  --button-cancel-border-color-hover: {STOP_HOVER};
  --button-cancel-text-color: #ffffff;
  --button-cancel-text-color-hover: #ffffff;
}}
body:not(.dark) .gradio-container {{
  --color-accent: {PRIMARY};
}}
body:not(.dark) footer button, body:not(.dark) footer a {{
  color: #52525b;
}}
.sr-only {{
  position: absolute !important; width: 1px !important; height: 1px !important; padding: 0 !important;
  margin: -1px !important; overflow: hidden !important; clip: rect(0, 0, 0, 0) !important;
  white-space: nowrap !important; border: 0 !important;
}}
"""

HEAD = """
<script>
(() => {
  const names = {"Record": "Record: stream the camera to the recognizer", "Stop": "Stop streaming the camera"};
  let lastError = "";
  const fix = () => {
    const announcer = document.getElementById("live-announce");
    if (announcer && announcer.getAttribute("aria-live") !== "polite") {
      announcer.setAttribute("role", "status");
      announcer.setAttribute("aria-live", "polite");
      announcer.setAttribute("aria-atomic", "true");
    }
    const toasts = document.querySelectorAll("[data-testid='toast-text']");
    if (toasts.length) lastError = toasts[toasts.length - 1].textContent.trim();
    if (lastError) {
      // Only bare badges: one that already carries its own sentence keeps it.
      document.querySelectorAll("[data-testid='status-tracker'] span.error").forEach((badge) => {
        if (badge.textContent.trim() === "Error") { badge.textContent = `Error: ${lastError}`; badge.title = lastError; }
      });
    }
    document.querySelectorAll("#live-camera button[aria-label]").forEach((button) => {
      const shown = button.textContent.trim();
      const name = names[shown];
      if (name && button.getAttribute("aria-label") !== name) button.setAttribute("aria-label", name);
    });
  };
  const start = () => {
    fix();
    new MutationObserver(fix).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                      attributes: true, attributeFilter: ["aria-label"]});
  };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
</script>
"""
