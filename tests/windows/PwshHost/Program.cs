// pwsh.exe: PowerShell's own console host, with pwsh's command line (-NoProfile, -File, ...).
return Microsoft.PowerShell.ConsoleShell.Start(null, null, args);
