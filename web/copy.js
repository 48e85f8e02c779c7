// Copy buttons: a button with data-copy copies that text, one with
// data-copy-from the text of the element with that id. Buttons stay hidden
// where the clipboard cannot be used (no JavaScript, or no secure context).
if (navigator.clipboard) {
  for (const button of document.querySelectorAll('button.copy')) {
    button.hidden = false;
    button.addEventListener('click', async () => {
      const text = button.dataset.copy ?? document.getElementById(button.dataset.copyFrom)?.textContent ?? '';
      try {
        await navigator.clipboard.writeText(text.trim());
        button.textContent = 'Copied';
      } catch {
        button.textContent = 'Copy failed';
      }
      setTimeout(() => { button.textContent = 'Copy'; }, 1500);
    });
  }
}
