<#
.SYNOPSIS
Writes the module's MAML help (en-US/DefenderPackage.dll-Help.xml) from the text in this folder
and the cmdlets themselves.

.DESCRIPTION
Each command's help is written in <Command>.md here: synopsis, description, one section per
parameter, inputs, outputs, examples, related links. What the cmdlet itself says is taken from
it, never written by hand: the syntax of every parameter set (so -WhatIf and -Confirm, and which
parameters a set requires, are always right), positions, pipeline input, aliases, wildcards
([SupportsWildcards]), types, default values (a new instance's properties) and the online link
(HelpUri). tests/pester/Module.Tests.ps1 checks that the committed file is what this writes:
after changing a command or its text, lay out the module (powershell/build.sh) and run

    pwsh -NoProfile -File powershell/help/Build-Help.ps1

The text format: '# Name', then '## Synopsis', '## Description', '## Parameters' with
'### -Name' each, '## Inputs' and '## Outputs' with '### Type' each, '## Examples' with
'### Title' each (a ```powershell block, then the remarks), '## Related links' ('- Name' each).
Paragraphs are separated by a blank line and keep their line breaks.
#>
param(
    # The laid-out module to read the cmdlets from (powershell/build.sh's output).
    [string] $ModulePath = (Join-Path ($env:CARGO_TARGET_DIR ?? (Join-Path $PSScriptRoot '../../target')) 'powershell/DefenderPackage'),
    # Where to write the MAML; default: the module's source folder, where it is committed.
    [string] $OutFile = (Join-Path $PSScriptRoot '../DefenderPackage/en-US/DefenderPackage.dll-Help.xml')
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$module = Import-Module $ModulePath -PassThru -Force
$manifest = Import-PowerShellDataFile (Join-Path $PSScriptRoot '../DefenderPackage/DefenderPackage.psd1')
$common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
# How a type is shown: ConnectionOptions is written as a hashtable.
$shownTypes = @{ 'ConnectionOptions' = 'Hashtable' }
$standard = @{
    WhatIf  = 'Shows what the command would do, without doing it.'
    Confirm = 'Asks for confirmation before each change.'
}

function Read-HelpText {
    # The sections of <Name>.md: Synopsis, Description (paragraphs), Parameters, Inputs, Outputs,
    # Examples (name -> paragraphs, in order), Related links (names).
    param([string] $Path)
    $sections = [ordered]@{}
    $section = $null
    $entry = $null
    $lines = (Get-Content -LiteralPath $Path -Raw) -replace "`r`n", "`n" -split "`n"
    foreach ($line in $lines) {
        if ($line -match '^# ') { continue }
        if ($line -match '^## (.+)$') {
            $section = $Matches[1].Trim()
            $sections[$section] = [ordered]@{ '' = [System.Collections.Generic.List[string]]::new() }
            $entry = ''
            continue
        }
        if ($line -match '^### (.+)$' -and $section) {
            $entry = $Matches[1].Trim()
            $sections[$section][$entry] = [System.Collections.Generic.List[string]]::new()
            continue
        }
        if ($null -ne $section) { $sections[$section][$entry].Add($line) }
    }
    $sections
}

function Split-Paragraph {
    # Lines into paragraphs (blank-line separated, line breaks kept); a ```powershell block
    # becomes the paragraph it is, marked as code.
    param([System.Collections.Generic.List[string]] $Lines)
    $paragraphs = [System.Collections.Generic.List[object]]::new()
    $current = [System.Collections.Generic.List[string]]::new()
    $inCode = $false
    $code = [System.Collections.Generic.List[string]]::new()
    foreach ($line in $Lines) {
        if ($line -match '^```') {
            if ($inCode) { $paragraphs.Add([pscustomobject]@{ Code = ($code -join "`n") }); $code.Clear() }
            $inCode = -not $inCode
            continue
        }
        if ($inCode) { $code.Add($line); continue }
        if ($line.Trim() -eq '') {
            if ($current.Count) { $paragraphs.Add(($current -join "`n")); $current.Clear() }
            continue
        }
        $current.Add($line)
    }
    if ($current.Count) { $paragraphs.Add(($current -join "`n")) }
    , $paragraphs
}

function Get-TypeName {
    param([type] $Type)
    $name = if ($Type.IsArray) { $Type.GetElementType().Name + '[]' } else { $Type.Name }
    if ($shownTypes.ContainsKey($name)) { $shownTypes[$name] } else { $name }
}

$settings = [System.Xml.XmlWriterSettings]::new()
$settings.Indent = $true
$settings.IndentChars = '  '
$settings.NewLineChars = "`n"
$settings.Encoding = [System.Text.UTF8Encoding]::new($false)
$text = [System.IO.StringWriter]::new()
$xml = [System.Xml.XmlWriter]::Create($text, $settings)
$maml = 'http://schemas.microsoft.com/maml/2004/10'
$dev = 'http://schemas.microsoft.com/maml/dev/2004/10'
$cmd = 'http://schemas.microsoft.com/maml/dev/command/2004/10'

function Write-Para {
    param([string] $Element = 'para', [string] $Text)
    $xml.WriteElementString($Element, $maml, $Text)
}

function Write-Description {
    param([object[]] $Paragraphs)
    $xml.WriteStartElement('description', $maml)
    foreach ($paragraph in $Paragraphs) { Write-Para -Text $paragraph }
    $xml.WriteEndElement()
}

function Write-Parameter {
    # A command:parameter element, in a syntax item (required in that set) or in the parameters.
    param($Command, $Parameter, [bool] $Required, [object[]] $Description, $Attributes, $Default)
    $positional = @($Attributes | Where-Object Position -ge 0)
    $position = if ($positional.Count) { $positional[0].Position } else { $null }
    $byValue = @($Attributes | Where-Object ValueFromPipeline).Count -gt 0
    $byName = @($Attributes | Where-Object ValueFromPipelineByPropertyName).Count -gt 0
    $pipeline = if ($byValue -and $byName) { 'true (ByValue, ByPropertyName)' } elseif ($byValue) { 'true (ByValue)' } elseif ($byName) { 'true (ByPropertyName)' } else { 'false' }
    $globbing = @($Parameter.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] }).Count -gt 0
    $xml.WriteStartElement('parameter', $cmd)
    $xml.WriteAttributeString('required', $Required.ToString().ToLowerInvariant())
    $xml.WriteAttributeString('variableLength', $Parameter.ParameterType.IsArray.ToString().ToLowerInvariant())
    $xml.WriteAttributeString('globbing', $globbing.ToString().ToLowerInvariant())
    $xml.WriteAttributeString('pipelineInput', $pipeline)
    $xml.WriteAttributeString('position', $(if ($null -ne $position) { "$position" } else { 'named' }))
    $xml.WriteAttributeString('aliases', $(if ($Parameter.Aliases.Count) { $Parameter.Aliases -join ', ' } else { 'none' }))
    $xml.WriteElementString('name', $maml, $Parameter.Name)
    Write-Description $Description
    $type = Get-TypeName $Parameter.ParameterType
    if ($type -ne 'SwitchParameter') {
        $xml.WriteStartElement('parameterValue', $cmd)
        $xml.WriteAttributeString('required', 'true')
        $xml.WriteAttributeString('variableLength', 'false')
        $xml.WriteString($type)
        $xml.WriteEndElement()
    }
    $xml.WriteStartElement('type', $dev)
    $xml.WriteElementString('name', $maml, $type)
    $xml.WriteEndElement()
    $xml.WriteElementString('defaultValue', $dev, $Default)
    $xml.WriteEndElement()
}

$xml.WriteStartDocument()
$xml.WriteStartElement('helpItems', 'http://msh')
$xml.WriteAttributeString('schema', 'maml')
foreach ($name in $manifest.CmdletsToExport) {
    $command = Get-Command $name -Module $module.Name
    $path = Join-Path $PSScriptRoot "$name.md"
    if (-not (Test-Path -LiteralPath $path)) { throw "$name has no help text: write $path" }
    $help = Read-HelpText $path
    $parameterText = @{}
    foreach ($key in $help['Parameters'].Keys) { if ($key) { $parameterText[$key.TrimStart('-')] = Split-Paragraph $help['Parameters'][$key] } }
    $fresh = [Activator]::CreateInstance($command.ImplementingType)
    $shouldProcess = $command.Parameters.ContainsKey('WhatIf')
    $names = @($command.Parameters.Keys | Where-Object { $_ -notin $common -or ($shouldProcess -and $_ -in 'WhatIf', 'Confirm') })
    foreach ($parameter in $names) {
        if (-not $parameterText.ContainsKey($parameter) -and -not $standard.ContainsKey($parameter)) { throw "$name -$parameter has no text in $path" }
    }
    $describe = { param($parameter) if ($parameterText.ContainsKey($parameter)) { $parameterText[$parameter] } else { , @($standard[$parameter]) } }
    $default = {
        param($parameter)
        if ($parameter -in 'WhatIf', 'Confirm') { return 'False' }
        $value = $command.ImplementingType.GetProperty($parameter).GetValue($fresh)
        if ($null -eq $value) { 'None' } elseif ($value -is [System.Management.Automation.SwitchParameter]) { "$($value.IsPresent)" }
        elseif ($value.GetType().Name -eq 'ConnectionOptions') { 'None' } else { "$value" }
    }

    $xml.WriteStartElement('command', 'command', $cmd)
    $xml.WriteAttributeString('xmlns', 'maml', $null, $maml)
    $xml.WriteAttributeString('xmlns', 'dev', $null, $dev)
    $xml.WriteStartElement('details', $cmd)
    $xml.WriteElementString('name', $cmd, $name)
    $xml.WriteElementString('verb', $cmd, $command.Verb)
    $xml.WriteElementString('noun', $cmd, $command.Noun)
    Write-Description (Split-Paragraph $help['Synopsis'][''])
    $xml.WriteEndElement()
    Write-Description (Split-Paragraph $help['Description'][''])

    # Syntax: each parameter set, the default first; positional parameters in their order, then
    # the rest as declared, -WhatIf and -Confirm last.
    $xml.WriteStartElement('syntax', $cmd)
    $sets = @($command.ParameterSets | Sort-Object { -not $_.IsDefault })
    foreach ($set in $sets) {
        $xml.WriteStartElement('syntaxItem', $cmd)
        $xml.WriteElementString('name', $maml, $name)
        $inSet = @($set.Parameters | Where-Object { $_.Name -in $names })
        $ordered = @($inSet | Where-Object Position -ge 0 | Sort-Object Position) + @($inSet | Where-Object { $_.Position -lt 0 -and $_.Name -notin 'WhatIf', 'Confirm' }) + @($inSet | Where-Object Name -in 'WhatIf', 'Confirm')
        foreach ($parameter in $ordered) {
            $attributes = @($command.Parameters[$parameter.Name].Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] -and ($_.ParameterSetName -eq $set.Name -or $_.ParameterSetName -eq '__AllParameterSets') })
            Write-Parameter $command $command.Parameters[$parameter.Name] $parameter.IsMandatory (& $describe $parameter.Name) $attributes (& $default $parameter.Name)
        }
        $xml.WriteEndElement()
    }
    $xml.WriteEndElement()

    # Parameters: required only when every set that has it requires it.
    $xml.WriteStartElement('parameters', $cmd)
    foreach ($parameterName in $names) {
        $parameter = $command.Parameters[$parameterName]
        $attributes = @($parameter.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] })
        $required = @($attributes | Where-Object { -not $_.Mandatory }).Count -eq 0 -and $attributes.Count -gt 0
        Write-Parameter $command $parameter $required (& $describe $parameterName) $attributes (& $default $parameterName)
    }
    $xml.WriteEndElement()

    foreach ($kind in @(@('Inputs', 'inputTypes', 'inputType'), @('Outputs', 'returnValues', 'returnValue'))) {
        $xml.WriteStartElement($kind[1], $cmd)
        foreach ($type in @($help[$kind[0]].Keys | Where-Object { $_ })) {
            $xml.WriteStartElement($kind[2], $cmd)
            $xml.WriteStartElement('type', $dev)
            $xml.WriteElementString('name', $maml, $type)
            $xml.WriteEndElement()
            Write-Description (Split-Paragraph $help[$kind[0]][$type])
            $xml.WriteEndElement()
        }
        $xml.WriteEndElement()
    }

    $xml.WriteStartElement('examples', $cmd)
    foreach ($title in @($help['Examples'].Keys | Where-Object { $_ })) {
        $paragraphs = Split-Paragraph $help['Examples'][$title]
        $code = @($paragraphs | Where-Object { $_ -isnot [string] })
        if ($code.Count -ne 1) { throw "$name, $($title): an example has one ```powershell block" }
        $xml.WriteStartElement('example', $cmd)
        $xml.WriteElementString('title', $maml, "-------------------------- $title --------------------------")
        $xml.WriteStartElement('introduction', $maml)
        Write-Para -Text 'PS>'
        $xml.WriteEndElement()
        $xml.WriteElementString('code', $dev, $code[0].Code)
        $xml.WriteStartElement('remarks', $dev)
        foreach ($paragraph in $paragraphs | Where-Object { $_ -is [string] }) { Write-Para -Text $paragraph }
        $xml.WriteEndElement()
        $xml.WriteEndElement()
    }
    $xml.WriteEndElement()

    $xml.WriteStartElement('relatedLinks', $cmd)
    $links = @(@{ Text = 'Online Version:'; Uri = $command.HelpUri }) +
        @($help['Related links'][''] | Where-Object { $_ -match '^- ' } | ForEach-Object { @{ Text = $_.Substring(2).Trim(); Uri = '' } })
    foreach ($link in $links) {
        $xml.WriteStartElement('navigationLink', $maml)
        $xml.WriteElementString('linkText', $maml, $link.Text)
        $xml.WriteElementString('uri', $maml, $link.Uri)
        $xml.WriteEndElement()
    }
    $xml.WriteEndElement()
    $xml.WriteEndElement()
}
$xml.WriteEndElement()
$xml.WriteEndDocument()
$xml.Flush()
$result = $text.ToString() -replace '^<\?xml version="1.0" encoding="utf-16"\?>', '<?xml version="1.0" encoding="utf-8"?>'
[System.IO.File]::WriteAllText($OutFile, $result + "`n", [System.Text.UTF8Encoding]::new($false))
Remove-Module $module.Name
