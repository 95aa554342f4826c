enum PlaceholderTrellisClient {}
