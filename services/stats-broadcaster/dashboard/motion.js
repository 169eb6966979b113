// Number animation that respects prefers-reduced-motion.

const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

/** True when the user asked for less motion; checked on every call, so it follows the setting. */
export function motionReduced() {
  return reducedMotion.matches;
}

/** Duration of a count-up, milliseconds. */
const COUNT_MS = 600;

/**
 * Counts `element`'s number up (or down) from its current value to `target` over
 * ~600 ms with requestAnimationFrame; with reduced motion it shows the final value at once.
 * `format` turns a number into the text to show.
 */
export function countTo(element, target, format = (value) => String(Math.round(value))) {
  const from = Number(element.dataset.value ?? 0);
  element.dataset.value = String(target);
  element.dataset.final = format(target);
  if (element._frame) cancelAnimationFrame(element._frame);
  if (motionReduced() || from === target) {
    element.textContent = format(target);
    return;
  }
  const start = performance.now();
  const step = (now) => {
    const progress = Math.min(1, (now - start) / COUNT_MS);
    const eased = 1 - Math.pow(1 - progress, 3);
    element.textContent = format(from + (target - from) * eased);
    element._frame = progress < 1 ? requestAnimationFrame(step) : undefined;
  };
  element._frame = requestAnimationFrame(step);
}
