// Star buttons without a page reload: the form is sent asking for JSON and
// the button and count follow the answer. Any other answer (not signed in,
// refused, the PDS failing) is left to the form itself, which shows the
// page that explains it.
for (const form of document.querySelectorAll('form.star')) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const res = await fetch(form.action, {
        method: 'POST',
        body: new URLSearchParams(new FormData(form)),
        headers: { accept: 'application/json' },
      });
      if (!res.ok || !res.headers.get('content-type')?.includes('application/json')) {
        form.submit();
        return;
      }
      const { starred, stars } = await res.json();
      form.elements.action.value = starred ? 'unstar' : 'star';
      button.textContent = starred ? '★ Starred' : '☆ Star';
      button.setAttribute('aria-pressed', String(starred));
      form.querySelector('.star-count').textContent = `${stars} star${stars === 1 ? '' : 's'}`;
    } catch {
      form.submit();
    } finally {
      button.disabled = false;
    }
  });
}
