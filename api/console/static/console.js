// footfall console: the little the pages need in the browser. Everything else is rendered by the server.
"use strict";

// Constraint checks in the page, shown at the field (the server checks all of it again).
function fieldError(input) {
  if (input.validity.valueMissing) return `${input.dataset.label || input.name} is required`;
  if (input.validity.typeMismatch) return `not a valid ${input.type === "tel" ? "phone number" : input.type}`;
  if (input.validity.rangeUnderflow) return `at least ${input.min}`;
  if (input.validity.rangeOverflow) return `at most ${input.max}`;
  if (input.validity.stepMismatch) return "a whole number";
  if (input.validity.badInput) return "not a number";
  if (input.validity.tooShort) return `at least ${input.minLength} characters`;
  if (input.validity.tooLong) return `at most ${input.maxLength} characters`;
  if (input.value && input.dataset.pattern) {
    try {
      if (!new RegExp(input.dataset.pattern, "u").test(input.value)) return `must match ${input.dataset.pattern}`;
    } catch (e) { /* a pattern only RE2 reads: the server checks it */ }
  }
  return "";
}

function showError(input, message) {
  const slot = document.getElementById(`${input.id}-error`);
  if (slot) { slot.textContent = message; slot.hidden = !message; }
  if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
}

function validateForm(form) {
  let first = null;
  for (const input of form.querySelectorAll("input[name^='prop.'], select[name^='prop.']")) {
    if (input.type === "checkbox") continue;
    const message = fieldError(input);
    showError(input, message);
    if (message && !first) first = input;
  }
  const identifiers = [...form.querySelectorAll("input[data-identifier]")];
  if (identifiers.length && !identifiers.some((i) => i.value.trim())) {
    showError(identifiers[0], "give at least one identifier: user id, email, phone or customer id");
    first = first || identifiers[0];
  }
  if (first) first.focus();
  return !first;
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.matches("form[data-validate]") && !validateForm(form)) event.preventDefault();
});

document.addEventListener("change", (event) => {
  const input = event.target;
  if (input.closest("form[data-validate]") && input.name && input.name.startsWith("prop.")) showError(input, fieldError(input));
  if (input.matches("[data-select-all]")) {
    for (const box of document.querySelectorAll(`input[type=checkbox][name='${input.dataset.selectAll}']`)) box.checked = input.checked;
  }
});

// The counts-per-day graph (Chart.js, served by footfall from the npm package).
function drawCounts() {
  const canvas = document.getElementById("counts-chart");
  if (!canvas || typeof Chart === "undefined") return;
  const series = JSON.parse(canvas.dataset.series || "[]");
  canvas.chart = new Chart(canvas, {
    type: "bar",
    data: {
      labels: series.map((d) => d.day),
      datasets: [{ label: canvas.dataset.label, data: series.map((d) => d.count), backgroundColor: "#1095c1" }],
    },
    options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
               plugins: { legend: { display: false } } },
  });
}

window.addEventListener("load", drawCounts);
