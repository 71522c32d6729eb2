//! `GET /v1/rounds/{id}/missing?group_by=head&format=text`: the missing list
//! as door-knock messages, one per responsible head, in plain Chinese, ready
//! to paste into a group chat or an SMS.
//!
//! Each message names the round, the head (title and name) and their area,
//! then each household with the names still missing. It never holds an ID
//! number or a phone number: a message is forwarded and screenshotted, so it
//! carries only what a head needs at the door. The groups and their order
//! are exactly those of `group_by=head` (JSON); messages are separated by
//! one blank line and hold none inside.

use std::fmt::Write as _;

use actix_web::HttpResponse;

use super::missing::{HeadOut, PersonOut};

/// The messages for `groups` (as `group_by_head` gives them) of the round
/// named `round`.
pub fn messages(round: &str, groups: &[(Option<HeadOut>, Vec<PersonOut>)]) -> String {
    let mut out = String::new();
    for (i, (head, people)) in groups.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        write_message(&mut out, round, head.as_ref(), people);
    }
    out
}

/// The messages as a `text/plain` answer.
pub fn text_response(round: &str, groups: &[(Option<HeadOut>, Vec<PersonOut>)]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(messages(round, groups))
}

/// One line of text: a name or label with any line break made a space, so
/// a message never gains a blank line from the data it quotes.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_message(out: &mut String, round: &str, head: Option<&HeadOut>, people: &[PersonOut]) {
    let round = one_line(round);
    // The head's own area node: the group's key (every person of the group
    // shares it).
    let area = people
        .first()
        .and_then(|p| p.head_area.as_deref())
        .map(one_line);
    match (head, area) {
        (Some(h), Some(area)) => {
            let _ = writeln!(
                out,
                "【{round}】{}{}您好：您负责的{area}还有{}人未采样，请尽快上门提醒：",
                one_line(&h.title),
                one_line(&h.name),
                people.len()
            );
        }
        (Some(h), None) => {
            let _ = writeln!(
                out,
                "【{round}】{}{}您好：您负责的区域还有{}人未采样，请尽快上门提醒：",
                one_line(&h.title),
                one_line(&h.name),
                people.len()
            );
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "【{round}】以下{}人所在区域未登记负责人，请安排人员上门提醒：",
                people.len()
            );
        }
    }
    // People are in list order (area, household, name): each household's
    // people are contiguous.
    let mut i = 0;
    while i < people.len() {
        let (area, household) = (&people[i].area, &people[i].household);
        let mut names = Vec::new();
        while i < people.len() && people[i].area == *area && people[i].household == *household {
            names.push(one_line(&people[i].name));
            i += 1;
        }
        let _ = writeln!(out, "{}：{}", one_line(household), names.join("、"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str, household: &str, head_area: Option<&str>) -> PersonOut {
        PersonOut {
            person_id: "61080219850312001X".into(),
            name: name.into(),
            phone: "13900000000".into(),
            area: "崇文路街道/学院社区/第01网格/5号楼/3层".into(),
            household: household.into(),
            head: None,
            head_area: head_area.map(str::to_owned),
        }
    }

    #[test]
    fn each_group_is_one_message_with_its_households_and_no_numbers_of_people() {
        let head = HeadOut {
            title: "楼层长".into(),
            name: "王芳".into(),
            phone: "13900000001".into(),
        };
        let floor = Some("崇文路街道/学院社区/第01网格/5号楼/3层");
        let groups = vec![
            (
                Some(head),
                vec![
                    person("张三", "5号楼-301", floor),
                    person("李四", "5号楼-301", floor),
                    person("赵\n六", "5号楼-302", floor),
                ],
            ),
            (None, vec![person("钱七", "平房-1", None)]),
        ];
        let text = messages("第3轮全员核酸", &groups);
        assert_eq!(
            text,
            "【第3轮全员核酸】楼层长王芳您好：您负责的崇文路街道/学院社区/第01网格/5号楼/3层还有3人未采样，请尽快上门提醒：\n\
             5号楼-301：张三、李四\n\
             5号楼-302：赵 六\n\
             \n\
             【第3轮全员核酸】以下1人所在区域未登记负责人，请安排人员上门提醒：\n\
             平房-1：钱七\n"
        );
        assert!(!text.contains("1390000000"), "no phone numbers");
        assert!(!text.contains("001X"), "no ID numbers");
        assert_eq!(messages("r", &[]), "");
    }
}
