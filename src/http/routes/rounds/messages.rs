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

use super::export::{HeadOut, MissingList, PersonView};

/// A group's head and the area node they are the head of.
type GroupHead<'a> = Option<(&'a HeadOut, &'a str)>;

/// The messages for a missing list of the round named `round`: its groups by
/// head ([`MissingList::groups`]), one message each.
pub fn messages(round: &str, list: &MissingList) -> String {
    let groups: Vec<(GroupHead<'_>, Vec<PersonView<'_>>)> = list
        .groups()
        .into_iter()
        .map(|(h, people)| {
            (
                h.map(|h| (list.head(h), list.head_area(h))),
                people
                    .into_iter()
                    .map(|i| list.person(i as usize))
                    .collect(),
            )
        })
        .collect();
    write_messages(round, &groups)
}

fn write_messages(round: &str, groups: &[(GroupHead<'_>, Vec<PersonView<'_>>)]) -> String {
    let mut out = String::new();
    for (i, (head, people)) in groups.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        write_message(&mut out, round, *head, people);
    }
    out
}

/// One line of text: a name or label with any line break made a space, so
/// a message never gains a blank line from the data it quotes.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_message(out: &mut String, round: &str, head: GroupHead<'_>, people: &[PersonView<'_>]) {
    let round = one_line(round);
    match head {
        Some((h, area)) => {
            let area = one_line(area);
            let _ = writeln!(
                out,
                "【{round}】{}{}您好：您负责的{area}还有{}人未采样，请尽快上门提醒：",
                one_line(&h.title),
                one_line(&h.name),
                people.len()
            );
        }
        None => {
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
        let (area, household) = (people[i].area, people[i].household);
        let mut names = Vec::new();
        while i < people.len() && people[i].area == area && people[i].household == household {
            names.push(one_line(people[i].name));
            i += 1;
        }
        let _ = writeln!(out, "{}：{}", one_line(household), names.join("、"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person<'a>(name: &'a str, household: &'a str) -> PersonView<'a> {
        PersonView {
            person_id: "61080219850312001X".into(),
            name,
            phone: "13900000000",
            area: "崇文路街道/学院社区/第01网格/5号楼/3层",
            household,
            head: None,
        }
    }

    #[test]
    fn each_group_is_one_message_with_its_households_and_no_numbers_of_people() {
        let head = HeadOut {
            title: "楼层长".into(),
            name: "王芳".into(),
            phone: "13900000001".into(),
        };
        let floor = "崇文路街道/学院社区/第01网格/5号楼/3层";
        let groups = vec![
            (
                Some((&head, floor)),
                vec![
                    person("张三", "5号楼-301"),
                    person("李四", "5号楼-301"),
                    person("赵\n六", "5号楼-302"),
                ],
            ),
            (None, vec![person("钱七", "平房-1")]),
        ];
        let text = write_messages("第3轮全员核酸", &groups);
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
        assert_eq!(write_messages("r", &[]), "");
    }
}
