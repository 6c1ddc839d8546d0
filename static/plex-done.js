// Plex's forwardUrl in the popup: the opener finishes the sign-in, so just close.
window.close();
