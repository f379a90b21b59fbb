"""Places: stores and the geofences around them — checking, creating and importing them."""
