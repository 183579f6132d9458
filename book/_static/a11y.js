// Accessibility fixes applied when a page loads (see _ext/book_fixes.py).
document.addEventListener("DOMContentLoaded", () => {
  // The sidebar's section toggles are <summary> elements holding only an icon: name them.
  document.querySelectorAll("summary").forEach((s) => {
    if (!s.textContent.trim() && !s.getAttribute("aria-label")) {
      s.setAttribute("aria-label", "Show or hide this section's pages");
    }
  });
  // Wide tables scroll sideways (custom.css): make them reachable from the keyboard.
  document.querySelectorAll(".cell_output table, .output table").forEach((t) => {
    if (!t.hasAttribute("tabindex")) t.setAttribute("tabindex", "0");
  });
  // docutils marks the bibliography as a list whose entries are not list items.
  document.querySelectorAll('.citation-list[role="list"]').forEach((l) => l.removeAttribute("role"));
});
