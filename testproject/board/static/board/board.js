// The board's forms: add, rename and delete items with fetch().  Nothing here shows a change: every page,
// this one included, shows it when its event arrives (htmx's SSE extension or live.js apply it by DOM id).
(function () {
  "use strict";

  const form = document.getElementById("board-new");
  const error = document.getElementById("board-error");

  async function post(url, fields) {
    const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token },
      body: new URLSearchParams(fields),
    });
    error.textContent = response.ok ? "" : (await response.text()).slice(0, 200);
    return response.ok;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await post("/board/items/", { title: form.elements.title.value })) form.reset();
  });

  // The items come and go with the events: listen on the document rather than on each one.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-board-edit], [data-board-delete]");
    const item = button && button.closest("li[data-pk]");
    if (!item) return;
    const url = `/board/items/${encodeURIComponent(item.dataset.pk)}/`;
    if (button.hasAttribute("data-board-delete")) {
      post(`${url}delete/`, {});
      return;
    }
    // Rename in place: the item's own form, until the change (this page's or another's) replaces the item.
    const edit = document.createElement("form");
    edit.className = "board-rename";
    const input = Object.assign(document.createElement("input"), { name: "title", maxLength: 200, required: true });
    input.value = item.querySelector(".title").textContent;
    input.setAttribute("aria-label", "New title");
    const save = Object.assign(document.createElement("button"), { type: "submit", textContent: "Save" });
    const cancel = Object.assign(document.createElement("button"), { type: "button", textContent: "Cancel" });
    cancel.className = "link";
    edit.append(input, save, cancel);
    const actions = item.querySelector(".item-actions");
    edit.addEventListener("submit", (submitted) => {
      submitted.preventDefault();
      post(url, { title: input.value });
    });
    cancel.addEventListener("click", () => edit.replaceWith(actions));
    actions.replaceWith(edit);
    input.focus();
  });
})();
