"""The collector: the HTTP edge that high-traffic sites send beacons to (Segment's tracking API)."""
