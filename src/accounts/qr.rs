//! QR codes as inline SVG, for the authenticator enrolment page: no image files, no scripts,
//! so the page's CSP stays as it is.

use qrcode::render::svg;
use qrcode::QrCode;

/// Rendered size in CSS pixels; the `viewBox` lets a stylesheet scale it.
const SIZE: u32 = 200;
/// Modules of white border on each side (ISO/IEC 18004 asks for four).
const QUIET_ZONE: u32 = 4;

/// `data` as an inline `<svg>` QR code: black modules on white with the quiet zone, sized
/// about 200 px and scalable. None when `data` is too long for any QR version.
pub fn svg(data: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    // One SVG unit per module, so the viewBox is the module count and the path stays short.
    let image = code
        .render::<svg::Color>()
        .quiet_zone(true)
        .module_dimensions(1, 1)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .build();
    let modules = u32::try_from(code.width()).ok()? + 2 * QUIET_ZONE;
    // Drop the XML prolog (this is inline HTML) and replace the size in modules by a size in
    // pixels plus what assistive technology needs.
    let start = image.find("<svg")?;
    let fixed = format!(r#" version="1.1" width="{modules}" height="{modules}""#);
    let tag = image.get(start..)?;
    if !tag.contains(&fixed) {
        return None;
    }
    Some(tag.replacen(
        &fixed,
        &format!(r#" width="{SIZE}" height="{SIZE}" role="img" aria-label="QR code""#),
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inline_scalable_svg_that_grows_with_its_data() {
        let short = svg("otpauth://totp/doorman:alice?secret=MY").unwrap();
        assert!(short.starts_with("<svg"), "{short}");
        assert!(short.ends_with("</svg>"), "{short}");
        assert!(
            short.contains(r#"role="img" aria-label="QR code""#),
            "{short}"
        );
        assert!(short.contains(r#"width="200" height="200""#), "{short}");
        // Version 3 (29 modules) plus the quiet zone of four on each side.
        assert!(short.contains(r#"viewBox="0 0 37 37""#), "{short}");
        assert!(short.contains(r##"fill="#000""##) && short.contains(r##"fill="#fff""##));
        assert!(!short.contains("<?xml"));

        let long = svg(&crate::accounts::totp::otpauth_uri(
            "doorman at home",
            "alice.longname@example.com",
            &[7u8; 20],
        ))
        .unwrap();
        assert!(long.contains("viewBox"));
        assert!(long.contains(r#"width="200" height="200""#));
        assert!(long.len() > short.len());
        let view_box = |s: &str| {
            let rest = s.split_once("viewBox=\"0 0 ").unwrap().1;
            rest.split(' ').next().unwrap().parse::<u32>().unwrap()
        };
        assert!(view_box(&long) > view_box(&short));
    }

    #[test]
    fn data_too_long_for_a_qr_code_is_none() {
        assert_eq!(svg(&"x".repeat(8000)), None);
    }
}
