"""One router per resource: faces (verify, embed, detect), galleries, health and the page."""
