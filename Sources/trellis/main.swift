import TrellisCLI

await TrellisCommand.runMain()
