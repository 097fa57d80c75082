; The Windows installer of Mailcall, built with Debian's NSIS (makensis 3.08) by
; scripts/package-windows.sh; Tauri's own NSIS bundler is not used (it downloads a helper DLL at
; build time). Per user, no administrator rights: both programs go to
; %LOCALAPPDATA%\Programs\Mailcall, a Start-menu entry is made, and Mailcall can start at login
; (the "Start at login" component, or /AUTOSTART on the command line with /S).
; The uninstaller removes the program files, the Start-menu entry and the start at login; the
; user's mail and settings (%APPDATA%\mailcall: config, history, spool, the default Maildir) stay.
;
;   makensis -DVERSION=0.1.0 -DCLI_EXE=path\mailcall-cli.exe [-DTRAY_EXE=path\mailcall.exe]
;            -DOUTFILE=path\mailcall-setup.exe packaging/windows/mailcall.nsi
; Silent: mailcall-setup.exe /S [/AUTOSTART] [/D=C:\other\dir]; uninstall: Uninstall.exe /S

; A 64-bit installer: the programs are 64-bit only (and Wine without its 32-bit half runs it).
Target amd64-unicode
; -DCOMPRESSOR=zlib for a quick build (the tests'); lzma for what users get.
!ifdef COMPRESSOR
  SetCompressor /SOLID ${COMPRESSOR}
!else
  SetCompressor /SOLID lzma
!endif

!include "MUI2.nsh"
!include "FileFunc.nsh"
!include "LogicLib.nsh"

!ifndef VERSION
  !error "give -DVERSION=X.Y.Z"
!endif
!ifndef CLI_EXE
  !error "give -DCLI_EXE=path to mailcall-cli.exe"
!endif
!ifndef OUTFILE
  !define OUTFILE "mailcall-${VERSION}-setup.exe"
!endif

!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Mailcall"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"

Name "Mailcall"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\Mailcall"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
RequestExecutionLevel user
ShowInstDetails show

!define MUI_ICON "${__FILEDIR__}\..\..\src-tauri\icons\icon.ico"
!define MUI_UNICON "${__FILEDIR__}\..\..\src-tauri\icons\icon.ico"
!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

; What runs at login and from the Start menu: the tray app when it is in the installer, else the
; CLI's daemon.
!ifdef TRAY_EXE
  !define MAIN_EXE "mailcall.exe"
  !define MAIN_ARGS ""
!else
  !define MAIN_EXE "mailcall-cli.exe"
  !define MAIN_ARGS "daemon"
!endif

Section "Mailcall (required)" SecMain
  SectionIn RO
  SetShellVarContext current
  SetOutPath "$INSTDIR"
  File "/oname=mailcall-cli.exe" "${CLI_EXE}"
!ifdef TRAY_EXE
  File "/oname=mailcall.exe" "${TRAY_EXE}"
!endif
  WriteUninstaller "$INSTDIR\Uninstall.exe"

  CreateDirectory "$SMPROGRAMS\Mailcall"
  CreateShortcut "$SMPROGRAMS\Mailcall\Mailcall.lnk" "$INSTDIR\${MAIN_EXE}" "${MAIN_ARGS}"
  CreateShortcut "$SMPROGRAMS\Mailcall\Uninstall Mailcall.lnk" "$INSTDIR\Uninstall.exe"

  ; Apps & features, for this user.
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "Mailcall"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "Mailcall"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${MAIN_EXE}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\Uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\Uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section /o "Start at login" SecAutostart
  WriteRegStr HKCU "${RUN_KEY}" "Mailcall" '"$INSTDIR\${MAIN_EXE}" ${MAIN_ARGS}'
SectionEnd

LangString DESC_Main ${LANG_ENGLISH} "The tray app and mailcall-cli, for you only (no administrator rights)."
LangString DESC_Autostart ${LANG_ENGLISH} "Start Mailcall when you log in, so it fetches as soon as the link is up."
!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecMain} $(DESC_Main)
  !insertmacro MUI_DESCRIPTION_TEXT ${SecAutostart} $(DESC_Autostart)
!insertmacro MUI_FUNCTION_DESCRIPTION_END

; /AUTOSTART selects "Start at login" (for silent installs).
Function .onInit
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/AUTOSTART" $R1
  ${IfNot} ${Errors}
    SectionGetFlags ${SecAutostart} $R2
    IntOp $R2 $R2 | ${SF_SELECTED}
    SectionSetFlags ${SecAutostart} $R2
  ${EndIf}
FunctionEnd

Section "Uninstall"
  SetShellVarContext current
  ; The programs only: %APPDATA%\mailcall (settings, history, spool, the Maildir) is the user's.
  Delete "$INSTDIR\mailcall-cli.exe"
  Delete "$INSTDIR\mailcall.exe"
  Delete "$INSTDIR\Uninstall.exe"
  RMDir "$INSTDIR"
  Delete "$SMPROGRAMS\Mailcall\Mailcall.lnk"
  Delete "$SMPROGRAMS\Mailcall\Uninstall Mailcall.lnk"
  RMDir "$SMPROGRAMS\Mailcall"
  DeleteRegValue HKCU "${RUN_KEY}" "Mailcall"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
SectionEnd
