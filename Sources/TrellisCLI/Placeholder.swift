enum PlaceholderTrellisCLI {}
